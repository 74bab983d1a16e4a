"""Encoder parity: marsbench's adapters against the reference's own encoder code, per model family.

For every case under `benchmarks/parity/encoders/families/` the runner builds a tiny random model
(hub layout), embeds the shared inputs with the reference implementation's encoder classes in the
reference's own environment (the transformers version its path pins), embeds the same image files
and texts with marsbench's encoder (engine in-process, or `--http`: a real uvicorn server), and
compares the L2-normalised vectors (max abs difference, fp32, CPU).

    python benchmarks/parity/encoder_parity.py setup --work /tmp/parity [--third-party DIR]
    python benchmarks/parity/encoder_parity.py run --work /tmp/parity --reference /tmp/ref \
        [--family open_clip ...] [--case NAME ...] [--http] [--tolerance 1e-5]

Run from the repository root with marsbench's interpreter (`.venv/bin/python`). See
docs/parity.md ("Encoders").
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.parity.encoders.cases import Case, Environment, Source  # noqa: E402
from marsbench.files import file_sha256  # noqa: E402

ENCODERS = REPO_ROOT / "benchmarks" / "parity" / "encoders"
FAMILIES = ENCODERS / "families"
REFERENCE_SCRIPTS = ENCODERS / "reference"
# torch and torchvision as marsbench runs them; pip finds them on this machine's disk (find-links).
TORCH = ("torch==2.14.1", "torchvision==0.29.1")
DEFAULT_TOLERANCE = 1e-5
REFERENCE_TIMEOUT_S = 1800


# -- discovery -----------------------------------------------------------------------------------


@dataclass
class Family:
    name: str
    module: ModuleType | None
    error: str | None = None

    @property
    def cases(self) -> list[Case]:
        return list(getattr(self.module, "CASES", [])) if self.module else []

    @property
    def envs(self) -> list[Environment]:
        return list(getattr(self.module, "ENVS", [])) if self.module else []

    @property
    def sources(self) -> list[Source]:
        return list(getattr(self.module, "THIRD_PARTY", [])) if self.module else []


def discover(names: list[str] | None = None) -> list[Family]:
    """Every family module (or the named ones); one that fails to import is kept with its error."""
    families = []
    for path in sorted(FAMILIES.glob("*.py")):
        if path.name.startswith("_") or (names and path.stem not in names):
            continue
        try:
            module = importlib.import_module(f"benchmarks.parity.encoders.families.{path.stem}")
            families.append(Family(path.stem, module))
        except Exception as exc:  # another family's bug must not stop this one
            families.append(Family(path.stem, None, f"import failed: {type(exc).__name__}: {exc}"))
    if names:
        missing = set(names) - {f.name for f in families}
        if missing:
            raise SystemExit(f"no family module named {sorted(missing)} under {FAMILIES}")
    return families


def all_envs(families: list[Family]) -> dict[str, Environment]:
    envs: dict[str, Environment] = {}
    for family in families:
        for env in family.envs:
            known = envs.get(env.name)
            if known is not None and known != env:
                print(f"warning: environment {env.name!r} is declared differently by {family.name}; "
                      "the first declaration is used", file=sys.stderr)  # fmt: skip
                continue
            envs[env.name] = env
    return envs


def all_sources(families: list[Family]) -> dict[str, Source]:
    return {source.name: source for family in families for source in family.sources}


# -- setup ---------------------------------------------------------------------------------------


def env_python(work: Path, name: str) -> Path:
    return work / "envs" / name / "bin" / "python"


def _requirements_stamp(env: Environment) -> str:
    return hashlib.sha256(json.dumps([*TORCH, *env.requirements]).encode()).hexdigest()


def setup_env(work: Path, env: Environment) -> None:
    folder = work / "envs" / env.name
    stamp = folder / ".parity-requirements"
    if (
        stamp.is_file()
        and stamp.read_text() == _requirements_stamp(env)
        and env_python(work, env.name).exists()
    ):
        print(f"environment {env.name}: up to date ({folder})")
        return
    print(f"environment {env.name}: creating {folder}")
    if not env_python(work, env.name).exists():
        subprocess.run(["python3", "-m", "venv", str(folder)], check=True)
    pip = [str(env_python(work, env.name)), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, *TORCH], check=True)
    if env.requirements:
        subprocess.run([*pip, *env.requirements], check=True)
    stamp.write_text(_requirements_stamp(env))


def verify_source(folder: Path, source: Source) -> list[str]:
    """Problems with a fetched source: missing files, sha256 mismatches."""
    problems = []
    for path in source.paths:
        if not (folder / path).is_file():
            problems.append(f"{path}: missing")
    for path, expected in source.sha256.items():
        file = folder / path
        if file.is_file() and file_sha256(file) != expected:
            problems.append(f"{path}: sha256 {file_sha256(file)} != {expected}")
    return problems


def fetch_source(work: Path, source: Source, offered: Path | None) -> None:
    dest = work / "third_party" / source.name
    if dest.is_dir() and not verify_source(dest, source):
        print(f"source {source.name}: present ({dest})")
        return
    if offered is not None and (offered / source.name).is_dir():
        if offered.resolve() != (work / "third_party").resolve():
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(offered / source.name, dest)
    else:
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(["git", "clone", "--quiet", "--no-checkout", source.repo, str(dest)], check=True)
            subprocess.run(["git", "-C", str(dest), "checkout", "--quiet", source.commit], check=True)
        except subprocess.CalledProcessError as exc:
            raise SystemExit(
                f"source {source.name}: cannot clone {source.repo}@{source.commit} ({exc}); without "
                f"network, pass --third-party DIR holding {source.name}/"
            ) from None
    problems = verify_source(dest, source)
    if problems:
        raise SystemExit(f"source {source.name} in {dest}: " + "; ".join(problems))
    print(f"source {source.name}: {source.repo}@{source.commit[:12]} -> {dest} (sha256 verified)")


def cmd_setup(args: argparse.Namespace) -> int:
    work: Path = args.work.resolve()
    families = discover(args.family)
    for family in families:
        if family.error:
            print(f"family {family.name}: {family.error}", file=sys.stderr)
    for env in all_envs(families).values():
        setup_env(work, env)
    for source in all_sources(families).values():
        fetch_source(work, source, args.third_party)
    return 0


# -- run -----------------------------------------------------------------------------------------


@dataclass
class Result:
    case: str
    family: str
    models: list[str]
    status: str = "error"
    reason: str = ""
    n_images: int = 0
    n_texts: int = 0
    max_abs: dict[str, float | None] = field(default_factory=dict)
    reference_meta: dict[str, Any] = field(default_factory=dict)
    marsbench_meta: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    seconds: float = 0.0


def _subprocess_env(extra_path: list[Path]) -> dict[str, str]:
    env = dict(os.environ)
    env |= {"CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "PYTHONHASHSEED": "0"}  # fmt: skip
    env.pop("MARSBENCH_ENCODER_REGISTRY", None)
    env.pop("PYTHONPATH", None)
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in extra_path)
    return env


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _load(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with np.load(path) as data:
        arrays = {k: np.asarray(data[k], dtype=np.float32) for k in data.files if k != "meta"}
        meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
    return arrays, meta


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = rows.astype(np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def run_case(
    case: Case, family: Family, work: Path, out: Path, reference: Path, inputs: Path,
    envs: dict[str, Environment], *, http: bool, tolerance: float, overrides: dict[str, Any] | None = None,
) -> Result:  # fmt: skip
    from benchmarks.parity.encoders.inputs import image_files, texts
    from benchmarks.parity.encoders.marsbench_side import write_registry

    started = time.monotonic()
    result = Result(case.name, family.name, list(case.models), notes=case.notes)
    result.n_images = len(image_files(inputs)) if "image" in case.modalities else 0
    result.n_texts = len(texts(inputs)) if "text" in case.modalities else 0
    folder = out / "cases" / case.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    model_dir = out / "models" / case.name
    shutil.rmtree(model_dir, ignore_errors=True)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    third_party = work / "third_party"
    env = envs.get(case.env)
    python = env_python(work, case.env)
    if env is None or not python.exists():
        result.reason = f"reference environment {case.env!r} is not set up (run `setup --work {work}`)"
        return result
    try:
        fields = case.build(model_dir, third_party)
    except Exception as exc:
        (folder / "build.log").write_text(traceback.format_exc())
        result.reason = f"build failed: {type(exc).__name__}: {exc}"[:300]
        return result
    registry = write_registry(folder / "registry.toml", case.models[0], fields | (overrides or {}))

    ref_out = folder / "reference.npz"
    ref_cmd = [str(python), str(REFERENCE_SCRIPTS / case.reference), "--case", case.name, "--reference",
               str(reference), "--third-party", str(third_party), "--model", str(model_dir), "--inputs",
               str(inputs), "--out", str(ref_out)]  # fmt: skip
    ref_path = [third_party / name for name in env.python_path]
    mb_out = folder / "marsbench.npz"
    mb_cmd = [sys.executable, "-m", "benchmarks.parity.encoders.marsbench_side", "--registry", str(registry),
              "--model", case.models[0], "--inputs", str(inputs), "--out", str(mb_out), "--modalities",
              ",".join(case.modalities)] + (["--http"] if http else [])  # fmt: skip
    mb_cmd += [arg for module in case.imports for arg in ("--import", module)]
    mb_cmd += [arg for key, value in case.encoder.items() for arg in ("--setting", f"{key}={value}")]
    for side, cmd, extra, log in (
        ("reference", ref_cmd, ref_path, folder / "reference.log"),
        ("marsbench", mb_cmd, [REPO_ROOT], folder / "marsbench.log"),
    ):
        try:
            proc = subprocess.run(
                cmd, cwd=REPO_ROOT, env=_subprocess_env(extra), capture_output=True, text=True,
                timeout=REFERENCE_TIMEOUT_S,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            result.reason = f"{side} side timed out after {REFERENCE_TIMEOUT_S} s"
            return result
        log.write_text(f"$ {' '.join(cmd)}\n\n{proc.stdout}\n{proc.stderr}")
        if proc.returncode != 0:
            result.reason = (
                f"{side} side failed: {_last_line(proc.stderr) or _last_line(proc.stdout)} ({log})"
            )
            return result
    ref_arrays, result.reference_meta = _load(ref_out)
    mb_arrays, result.marsbench_meta = _load(mb_out)
    worst = 0.0
    for modality in case.modalities:
        a, b = ref_arrays.get(modality), mb_arrays.get(modality)
        if a is None or b is None:
            result.reason = f"{modality}: {'reference' if a is None else 'marsbench'} gave no vectors"
            return result
        if a.shape != b.shape:
            result.reason = f"{modality}: shapes differ, reference {a.shape} vs marsbench {b.shape}"
            return result
        diff = float(np.abs(_unit(a) - _unit(b)).max())
        result.max_abs[modality] = diff
        worst = max(worst, diff)
    result.status = "ok" if worst <= tolerance else ("info" if case.informational else "DIFF")
    if result.status == "info":
        result.reason = case.informational
    result.seconds = round(time.monotonic() - started, 1)
    return result


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def _processor(meta: dict[str, Any]) -> str:
    name = meta.get("image_processor", "?")
    backend = meta.get("image_backend")
    return f"{name} [{backend}]" if backend else str(name)


def print_table(results: list[Result], tolerance: float) -> None:
    header = (
        f"{'case':<16} {'models':<34} {'img':>3} {'txt':>3} {'image max|d|':>12} {'text max|d|':>12}  status"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        status = r.status if r.status != "error" else f"error: {r.reason}"
        if r.status in ("DIFF", "info"):
            status += f" (> {tolerance:g})"
        print(f"{r.case:<16} {','.join(r.models):<34} {r.n_images:>3} {r.n_texts:>3} "
              f"{_fmt(r.max_abs.get('image')):>12} {_fmt(r.max_abs.get('text')):>12}  {status}")  # fmt: skip
    print()
    for r in results:
        if r.reference_meta or r.marsbench_meta:
            ref, mb = r.reference_meta, r.marsbench_meta
            print(f"{r.case}: reference {_processor(ref)} (transformers {ref.get('transformers', '?')}); "
                  f"marsbench {_processor(mb)} (transformers {mb.get('transformers', '?')}, via "
                  f"{mb.get('via', '?')})")  # fmt: skip


def _overrides(items: list[str]) -> dict[str, Any]:
    import tomllib

    fields: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected FIELD=VALUE")
        try:
            fields[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            fields[key] = value  # a bare word: a string
    return fields


def cmd_run(args: argparse.Namespace) -> int:
    from benchmarks.parity.encoders.inputs import write_inputs

    work: Path = args.work.resolve()
    out: Path = (args.out or args.work).resolve()
    reference: Path = args.reference.resolve()
    if not (reference / "models" / "openclip.py").is_file():
        raise SystemExit(f"{reference} is not a MarsRetrieval checkout (no models/openclip.py)")
    overrides = _overrides(args.overrides)
    families = discover(args.family)
    envs = all_envs(discover())  # a family may run in an environment another one declares
    inputs = write_inputs(out / "inputs")
    results: list[Result] = []
    for family in families:
        if family.error:
            results.append(Result(f"({family.name})", family.name, [], reason=family.error))
            continue
        for case in family.cases:
            if args.case and case.name not in args.case:
                continue
            print(f"... {case.name}", file=sys.stderr, flush=True)
            try:
                result = run_case(case, family, work, out, reference, inputs, envs, http=args.http,
                                  tolerance=args.tolerance, overrides=overrides)  # fmt: skip
            except Exception as exc:
                result = Result(case.name, family.name, list(case.models), notes=case.notes,
                                reason=f"runner: {type(exc).__name__}: {exc}"[:300])  # fmt: skip
            results.append(result)
    print_table(results, args.tolerance)
    report = {
        "tolerance": args.tolerance,
        "http": args.http,
        "overrides": overrides,
        "reference": str(reference),
        "inputs": str(inputs),
        "results": [r.__dict__ for r in results],
    }
    (out / "results.json").write_text(json.dumps(report, indent=2))
    print(f"\nresults: {out / 'results.json'}")
    informational = [r for r in results if r.status == "info"]
    for r in informational:
        print(f"{r.case}: informational, outside the fp32 claim: {r.reason}")
    return 0 if results and all(r.status in ("ok", "info") for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    setup = sub.add_parser("setup", help="create the reference environments, fetch third-party sources")
    setup.add_argument("--work", type=Path, required=True)
    setup.add_argument("--third-party", type=Path, default=None,
                       help="folder holding <source name>/ copies (no network)")  # fmt: skip
    setup.add_argument("--family", action="append", default=None)
    run = sub.add_parser("run", help="build, embed on both sides, compare")
    run.add_argument("--work", type=Path, required=True)
    run.add_argument("--reference", type=Path, required=True, help="MarsRetrieval checkout (1b7caa8)")
    run.add_argument("--out", type=Path, default=None,
                     help="where models, per-case files and results.json go (default: --work)")  # fmt: skip
    run.add_argument("--family", action="append", default=None, help="family module name (repeatable)")
    run.add_argument("--case", action="append", default=None, help="case name (repeatable)")
    run.add_argument("--http", action="store_true", help="marsbench through a uvicorn encoder server")
    run.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                     help="registry field added to every case's table on marsbench's side, VALUE as TOML "
                     "(e.g. image_backend='\"torchvision\"' to measure the other backend)")  # fmt: skip
    args = parser.parse_args(argv)
    return cmd_setup(args) if args.command == "setup" else cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())

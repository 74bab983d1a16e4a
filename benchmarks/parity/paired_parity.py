r"""Parity of `marsbench run paired` with the MarsRetrieval reference, on the same data and weights.

    python benchmarks/parity/paired_parity.py prepare --out /tmp/pairedparity
    marsbench run paired --dataset-dir /tmp/pairedparity/paired/dataset --model open_clip:ViT-S-32 \
        --checkpoint /tmp/pairedparity/ViT-S-32-seed0.pt --caption-key refined_caption \
        --out /tmp/pairedparity/runs/refined_caption --data-dir /tmp/pairedparity/state/refined_caption
    python benchmarks/parity/paired_parity.py reference --repo REPO --python PYTHON \
        --dataset /tmp/pairedparity/paired/dataset --checkpoint /tmp/pairedparity/ViT-S-32-seed0.pt \
        --caption-key refined_caption --db-dir /tmp/pairedparity/refdb/refined_caption \
        --output-dir /tmp/pairedparity/reflogs/refined_caption
    python benchmarks/parity/paired_parity.py compare --record /tmp/pairedparity/runs/refined_caption \
        --reference-log /tmp/pairedparity/reflogs/refined_caption

`prepare` writes an open_clip training checkpoint of a randomly initialised architecture (fixed
torch seed; the landform check's helper, so every parity check uses byte-identical weights) and
one paired dataset in the published layout from `marsbench.datasets.synth.synthesize`
(`paired/dataset/000000.tar ...`: `<key>.jpg` + `<key>.json`, the captions as the JSON's
top-level `ori_caption`, `refined_caption` and `qwen3_fused_caption`). `--edge-case CASE` writes a
copy beside it (`edge-<case>/paired/dataset`) with one extra shard holding a known source of
divergence: `missing` (one sample without a caption for any key, one without an image) or
`duplicate` (a second sample under a key an earlier shard already holds).

`reference` runs the reference's own `main.py` (`--task_config PairedVLRetrieval`) in its checkout.
The reference reads `data/paired_image_text_retrieval/dataset` relative to its working directory
and takes the caption key from its task config's class attribute `caption_key` (there is no
command-line flag), so this command points that symlink at `--dataset` and starts `main.py`
from a two-line launcher that sets `PairedVLRetrieval.caption_key` first. Nothing of the
reference is changed or copied; its own argument parsing, loader, encoders and evaluator run.
It also leaves `paired_parity_reference.json` (caption key, dataset, arguments) beside the log.

`compare` reads a marsbench run record (`caption_key`, `skipped`, `metrics` with i2t/t2i R@1, R@10,
MedR, MRR as fractions) and the reference's log line `Evaluation summary: {...}` (the same eight
values at full precision), prints them side by side with the samples each side skipped, and exits
1 when a value differs by more than the tolerance (default 1e-6) or the caption keys differ.

`diagnose` explains a difference: sample keys, row order, embeddings (the reference's database
folder against marsbench's store), exact score ties, and every query's partner rank on both
sides (the reference's ranks from its own `_compute_ranks`, run by `--reference-python`), with
the ranks any tie order could give.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

# The landform check's helpers (its checkpoint writer and log parsing), so that all checks share
# byte-identical weights and one reading of the reference's log. Not a package: import by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from landform_parity import DEFAULT_TOLERANCE, reference_summary, write_checkpoint

if TYPE_CHECKING:
    from marsbench.store import VectorStore

METRICS: tuple[str, ...] = (
    "i2t_r1",
    "i2t_r10",
    "i2t_medr",
    "i2t_mrr",
    "t2i_r1",
    "t2i_r10",
    "t2i_medr",
    "t2i_mrr",
)
CAPTION_KEYS: tuple[str, ...] = ("ori_caption", "refined_caption", "qwen3_fused_caption")
REFERENCE_TASK_CONFIG = "PairedVLRetrieval"
# Relative to the reference checkout: PairedVLRetrieval.project_dir + "/dataset", no flag for it.
REFERENCE_DATASET_LINK = Path("data/paired_image_text_retrieval/dataset")
SIDECAR = "paired_parity_reference.json"

EDGE_CASES: dict[str, str] = {
    "missing": "an extra shard with one sample whose JSON has no caption field and one sample "
    "with a JSON but no image (both sides drop them; marsbench reports them)",
    "duplicate": "an extra shard with a complete sample under a key that shard 000000 already "
    "holds, with another image and caption (the reference embeds both, marsbench skips the copy)",
}


# ----------------------------------------------------------------------------- prepare


def synthesized_paired(out: Path, *, scale: str, seed: int) -> Path:
    """`out/paired/dataset` from `marsbench.datasets.synth.synthesize` (replaced if present)."""
    from marsbench.datasets.synth import synthesize

    summary = synthesize(out, scale=scale, seed=seed, tasks=("paired",))  # type: ignore[arg-type]
    if summary.paired is None:
        raise SystemExit(f"synthesize() wrote no paired dataset under {out}")
    return Path(summary.paired.dataset_dir)


def _jpeg(seed: int, size: int = 96) -> bytes:
    """A noise image that resembles none of the synthetic ones."""
    rng = np.random.default_rng(seed)
    pixels = (rng.uniform(0, 255, (size, size, 3))).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _write_tar(path: Path, members: Iterable[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 946684800
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))


def _shards(dataset: Path) -> list[Path]:
    return sorted(
        (p for p in dataset.iterdir() if p.name.endswith(".tar") and p.is_file()), key=lambda p: p.name
    )


def _first_member_json(shard: Path) -> dict[str, Any]:
    with tarfile.open(shard) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".json"):
                handle = tar.extractfile(member)
                assert handle is not None
                document: dict[str, Any] = json.load(handle)
                return document
    raise SystemExit(f"{shard} holds no .json member")


def with_edge_case(source: Path, target: Path, case: str) -> list[str]:
    """A copy of `source` plus one extra shard for `case`; returns what the shard holds."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    shards = _shards(target)
    number = len(shards)
    extra = target / f"{number:06d}.tar"
    meta = {
        "url": "https://synth.marsbench.invalid/paired/edge.jpg",
        "status": "success",
        "width": 96,
        "height": 96,
    }
    captions = {k: f"An edge-case sample, caption {k}." for k in CAPTION_KEYS}
    if case == "missing":
        no_caption, no_image = f"{number:05d}0000", f"{number:05d}0001"
        members = [
            (f"{no_caption}.jpg", _jpeg(1)),
            (f"{no_caption}.json", json.dumps({"key": no_caption, **meta}).encode()),
            (f"{no_image}.json", json.dumps({"key": no_image, **meta, **captions}).encode()),
        ]
        held = [f"{no_caption}: image, JSON without any caption field", f"{no_image}: JSON only, no image"]
    elif case == "duplicate":
        key = str(_first_member_json(shards[0])["key"])
        members = [
            (f"{key}.jpg", _jpeg(2)),
            (f"{key}.json", json.dumps({"key": key, **meta, **captions}).encode()),
        ]
        held = [f"{key}: a complete sample under a key {shards[0].name} already holds"]
    else:
        raise ValueError(f"unknown edge case {case!r}")
    _write_tar(extra, members)
    return [f"{extra.name}: {line}" for line in held]


def cmd_prepare(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / f"{args.arch}-seed{args.seed}.pt"
    write_checkpoint(args.arch, args.seed, checkpoint)
    print(f"checkpoint: {checkpoint}")
    dataset = args.dataset or synthesized_paired(out, scale=args.scale, seed=args.seed)
    print(f"dataset: {dataset} ({len(_shards(dataset))} shards)")
    if args.edge_case:
        target = out / f"edge-{args.edge_case}" / "paired" / "dataset"
        for line in with_edge_case(dataset, target, args.edge_case):
            print(f"  {line}")
        print(f"edge case {args.edge_case}: {target}")
    return 0


# ----------------------------------------------------------------------------- reference


# Run by the reference's Python with the reference checkout as working directory: set the task
# config's caption key (a class attribute, read when main.py instantiates the config), then run
# main.py as `python main.py ARGS` would.
_REFERENCE_LAUNCH = r"""
import json, runpy, sys
spec = json.loads(sys.argv[1])
sys.path.insert(0, spec["repo"])
from configs.task.paired_image_text_retrieval import PairedVLRetrieval
PairedVLRetrieval.caption_key = spec["caption_key"]
sys.argv = ["main.py", *spec["argv"]]
runpy.run_path("main.py", run_name="__main__")
"""


def reference_argv(args: argparse.Namespace) -> list[str]:
    argv = [
        "--task_config", REFERENCE_TASK_CONFIG, "--model_config", "OpenCLIP",
        "--model_name", args.arch, "--pretrained", "", "--resume_post_train", str(args.checkpoint.resolve()),
        "--image_encoder_type", "openclip", "--text_encoder_type", "openclip",
        "--query_mode", "text", "--exp_name", "paired_parity",
        "--db_dir", str(args.db_dir.resolve()), "--output_dir", str(args.output_dir.resolve()),
    ]  # fmt: skip
    return [*argv, "--save_details"] if args.save_details else argv


def cmd_reference(args: argparse.Namespace) -> int:
    repo: Path = args.repo.resolve()
    if not (repo / "main.py").is_file():
        raise SystemExit(f"{repo} has no main.py: pass the reference checkout")
    if (args.db_dir / "image_features.npy").exists() and not args.reuse_db:
        raise SystemExit(
            f"{args.db_dir} already holds a reference database, which the reference would reuse whatever "
            "the dataset or caption key: use a fresh --db-dir (or --reuse-db)"
        )
    link = repo / REFERENCE_DATASET_LINK
    if link.exists() and not link.is_symlink():
        raise SystemExit(f"{link} is a real folder; move it away first")
    argv = reference_argv(args)
    print(f"link: {link} -> {args.dataset.resolve()}")
    print(f"caption key: PairedVLRetrieval.caption_key = {args.caption_key!r}")
    print(f"command (in {repo}): {args.python} main.py {' '.join(a if a else repr(a) for a in argv)}")
    if args.dry_run:
        return 0
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        link.unlink()
    link.symlink_to(args.dataset.resolve(), target_is_directory=True)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    sidecar = {
        "caption_key": args.caption_key,
        "dataset": str(args.dataset.resolve()),
        "db_dir": str(args.db_dir.resolve()),
        "repo": str(repo),
        "argv": argv,
    }
    (args.output_dir / SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n")
    spec = {"repo": str(repo), "caption_key": args.caption_key, "argv": argv}
    done = subprocess.run(
        [str(args.python), "-c", _REFERENCE_LAUNCH, json.dumps(spec)],
        cwd=repo,
        check=False,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    print(f"reference exited with {done.returncode}; log: {args.output_dir / 'retrieval.log'}")
    return done.returncode


# ----------------------------------------------------------------------------- compare


def load_record(path: Path) -> dict[str, Any]:
    """A run record file, or the newest `paired-*.json` in a folder."""
    if path.is_dir():
        records = sorted(path.glob("paired-*.json"), key=lambda p: p.stat().st_mtime)
        if not records:
            raise SystemExit(f"no paired-*.json run record in {path}")
        path = records[-1]
    record: dict[str, Any] = json.loads(path.read_text())
    if record.get("task") != "paired":
        raise SystemExit(f"{path} is a {record.get('task')!r} run record, not a paired one")
    record["_path"] = str(path)
    return record


def reference_sidecar(log: Path) -> dict[str, Any] | None:
    """What `reference` noted about the run whose log is (or is under) `log`."""
    folder = log if log.is_dir() else log.parent
    candidates = sorted(folder.rglob(SIDECAR), key=lambda p: p.stat().st_mtime)
    if not candidates:
        return None
    sidecar: dict[str, Any] = json.loads(candidates[-1].read_text())
    return sidecar


def reference_keys(db_dir: Path) -> list[str]:
    """The sample keys of a reference database, in its row order (keys.npy, a string array)."""
    return [str(k) for k in np.load(db_dir / "keys.npy", allow_pickle=False).tolist()]


@dataclass(frozen=True)
class Row:
    metric: str
    ours: float | None
    reference: float | None

    @property
    def diff(self) -> float:
        if self.ours is None or self.reference is None:
            return math.inf
        return abs(self.ours - self.reference)


def _number(table: Mapping[str, Any], key: str) -> float | None:
    value = table.get(key)
    return float(value) if isinstance(value, int | float) else None


def comparison_rows(record: Mapping[str, Any], summary: Mapping[str, Any]) -> list[Row]:
    ours = record.get("metrics") or {}
    return [Row(m, _number(ours, m), _number(summary, m)) for m in METRICS]


def _cell(value: float | None) -> str:
    return "missing" if value is None else f"{value:.12f}"


def render(rows: Sequence[Row], tolerance: float) -> str:
    lines = [f"{'metric':<9}  {'marsbench':>16}  {'reference':>16}  {'abs diff':>9}"]
    for row in rows:
        flag = "" if row.diff <= tolerance else "  <-- differs"
        diff = "inf" if math.isinf(row.diff) else f"{row.diff:.2e}"
        lines.append(f"{row.metric:<9}  {_cell(row.ours):>16}  {_cell(row.reference):>16}  {diff:>9}{flag}")
    return "\n".join(lines)


def skipped_lines(record: Mapping[str, Any]) -> list[str]:
    indexing = record.get("indexing") or {}
    items = indexing.get("skipped_items") or []
    lines = [f"marsbench skipped {record.get('skipped', 0)} sample(s) while indexing"]
    lines += [f"  {item.get('key')}: {item.get('reason')}" for item in items]
    return lines


def cmd_compare(args: argparse.Namespace) -> int:
    record = load_record(args.record)
    summary = reference_summary(args.reference_log)
    sidecar = reference_sidecar(args.reference_log)
    problems: list[str] = []
    ours_key = record.get("caption_key")
    theirs_key = (sidecar or {}).get("caption_key")
    print(f"record:    {record['_path']}")
    print(f"caption key: marsbench {ours_key!r}, reference {theirs_key!r}"
          + ("" if sidecar else f" (no {SIDECAR}: not run by `reference`)"))  # fmt: skip
    if sidecar is not None and ours_key != theirs_key:
        problems.append(f"caption keys differ: {ours_key!r} vs {theirs_key!r}")
    pairs = (record.get("counts") or {}).get("pairs")
    db_dir = args.reference_db or (Path(sidecar["db_dir"]) if sidecar and sidecar.get("db_dir") else None)
    ref_pairs = None
    if db_dir is not None and (db_dir / "keys.npy").is_file():
        keys = reference_keys(db_dir)
        ref_pairs = len(keys)
        repeated = sorted(k for k, n in Counter(keys).items() if n > 1)
        extra = f" ({len(repeated)} key(s) twice or more: {', '.join(repeated[:5])})" if repeated else ""
        print(f"pairs:     marsbench {pairs}, reference {ref_pairs} (rows of {db_dir / 'keys.npy'}){extra}")
        if pairs is not None and pairs != ref_pairs:
            problems.append(f"pair counts differ: {pairs} vs {ref_pairs}")
    else:
        print(f"pairs:     marsbench {pairs}, reference unknown (pass --reference-db)")
    for line in skipped_lines(record):
        print(line)
    print("reference: drops incomplete samples without a count or a message (see docs/parity.md)\n")
    rows = comparison_rows(record, summary)
    print(render(rows, args.tolerance))
    finite = [r.diff for r in rows if not math.isinf(r.diff)]
    print(f"\nmax abs diff {max(finite, default=0.0):.3e}; tolerance {args.tolerance:g}")
    failing = [r for r in rows if r.diff > args.tolerance]
    if failing:
        problems.append(f"{len(failing)} value(s) differ by more than {args.tolerance:g} or are missing")
    if problems:
        print("PARITY FAILED: " + "; ".join(problems))
        return 1
    print("PARITY OK")
    return 0


# ----------------------------------------------------------------------------- diagnose


# Run by the reference's Python in the reference checkout: its own evaluator on one pair of
# feature files (its database's, or marsbench's vectors saved in a chosen row order). Its rank
# helper is wrapped (not changed) to record the ranks of both calls (i2t, then t2i).
_REFERENCE_RANKS = r"""
import json, logging, sys
spec = json.loads(sys.argv[1])
sys.path.insert(0, spec["repo"])
logging.disable(logging.CRITICAL)
import numpy as np
import evaluators.paired_vl_evaluator as paired
calls = []
original = paired._compute_ranks
def recording(similarity):
    ranks = original(similarity)
    calls.append(ranks.tolist())
    return ranks
paired._compute_ranks = recording
features = {"image_features": np.load(spec["image"]), "text_features": np.load(spec["text"])}
metrics = paired.PairedVLEvaluator().evaluate({"__eval_input__": features}, label="recomputed")
print(json.dumps({"metrics": {k: float(v) for k, v in metrics.items()}, "i2t": calls[0], "t2i": calls[1]}))
"""


def reference_ranks(
    repo: Path, python: Path, image_features: Path, text_features: Path, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The reference evaluator's metrics and per-query ranks (i2t, t2i) for two feature files."""
    spec = {"repo": str(repo.resolve()), "image": str(image_features), "text": str(text_features)}
    done = subprocess.run(
        [str(python), "-c", _REFERENCE_RANKS, json.dumps(spec)],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", **(env or {})},
    )
    if done.returncode != 0:
        raise SystemExit(f"the reference's evaluator failed on {image_features}:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def reference_ranks_of(repo: Path, python: Path, images: np.ndarray, texts: np.ndarray) -> dict[str, Any]:
    """`reference_ranks` of in-memory vectors (saved to a scratch folder as float32)."""
    with tempfile.TemporaryDirectory(prefix="paired-parity-") as scratch:
        image_path, text_path = Path(scratch) / "image_features.npy", Path(scratch) / "text_features.npy"
        np.save(image_path, images.astype(np.float32))
        np.save(text_path, texts.astype(np.float32))
        return reference_ranks(repo, python, image_path, text_path)


def _equal_groups(vectors: np.ndarray) -> list[list[int]]:
    """Rows that are bit-identical to another row, grouped (row indices ascending)."""
    groups: dict[bytes, list[int]] = {}
    for i, row in enumerate(vectors):
        groups.setdefault(np.ascontiguousarray(row).tobytes(), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def _ties_with_partner(scores: np.ndarray) -> np.ndarray:
    """Per row i of a square score matrix: how many other columns score exactly S[i, i]."""
    partner = np.diagonal(scores)[:, None]
    return (scores == partner).sum(axis=1) - 1


def _metrics_line(label: str, values: Mapping[str, float]) -> str:
    return f"{label:<48}" + "".join(f" {values[m]:>10.6f}" for m in METRICS)


def cmd_diagnose(args: argparse.Namespace) -> int:
    from marsbench.store import open_store

    record = load_record(args.record)
    store = open_store(qdrant_url=None, data_dir=args.data_dir)
    try:
        return _diagnose(record, store, args)
    finally:
        store.close()


def _diagnose(record: Mapping[str, Any], store: VectorStore, args: argparse.Namespace) -> int:
    from marsbench.evaluator.core.tasks.paired import load_pairs
    from marsbench.evaluator.metrics.paired import paired_metrics, paired_ranks

    keys, images, texts = load_pairs(store, str(record["collection"]))
    db: Path = args.reference_db
    ref_keys = reference_keys(db)
    ref_images = np.load(db / "image_features.npy").astype(np.float32)
    ref_texts = np.load(db / "text_features.npy").astype(np.float32)
    problems = 0

    # Samples and row order.
    repeats = Counter(ref_keys)
    print(f"pairs: marsbench {len(keys)}, reference {len(ref_keys)} ({len(repeats)} distinct keys)")
    for label, names in (
        ("only in marsbench", sorted(set(keys) - set(ref_keys))),
        ("only in reference", sorted(set(ref_keys) - set(keys))),
        ("repeated in reference", sorted(k for k, n in repeats.items() if n > 1)),
    ):
        if names:
            problems += 1
            print(f"  {label}: {len(names)}: {', '.join(names[:10])}")
    first = next((i for i, (a, b) in enumerate(zip(keys, ref_keys, strict=False)) if a != b), None)
    if first is None and len(keys) == len(ref_keys):
        print("row order: the same (sample-key order)")
    else:
        runs = _order_runs(ref_keys)
        print(f"row order: parts at row {first}; the reference's rows, as runs of consecutive keys: {runs}")

    # Embeddings, by key.
    ours_row = {k: i for i, k in enumerate(keys)}
    common = [i for i, k in enumerate(ref_keys) if k in ours_row and repeats[k] == 1]
    mine = [ours_row[ref_keys[i]] for i in common]
    for name, a, b in (("image", images[mine], ref_images[common]), ("text", texts[mine], ref_texts[common])):
        delta = np.abs(a - b)
        same = int(np.sum(np.all(delta == 0, axis=1)))
        print(
            f"{name} embeddings of {len(common)} shared keys: max |diff| {delta.max():.3e}, "
            f"{same} bit-identical"
        )
        problems += bool(delta.max() > 0)
    sides = (
        ("text", texts, "marsbench"),
        ("text", ref_texts, "reference"),
        ("image", images, "marsbench"),
        ("image", ref_images, "reference"),
    )
    for name, vectors, side in sides:
        groups = _equal_groups(vectors)
        if groups:
            sizes = Counter(len(g) for g in groups)
            print(
                f"{side}: {len(groups)} group(s) of bit-identical {name} vectors "
                f"(size: count {dict(sorted(sizes.items()))}) -> exact score ties"
            )

    # Ranks: the reference's own, and marsbench's rule on both sides' rows.
    repo, python = args.reference_repo, args.reference_python
    ref = reference_ranks(repo, python, db / "image_features.npy", db / "text_features.npy")
    ref_i2t, ref_t2i = np.asarray(ref["i2t"]), np.asarray(ref["t2i"])
    table: list[tuple[str, Mapping[str, float]]] = [
        ("reference evaluator, its db", ref["metrics"]),
    ]
    if not (set(ref_keys) - set(keys)) and len(set(ref_keys)) == len(ref_keys):
        # marsbench's vectors through the reference's evaluator: in the reference's row order
        # (equal to the line above when the vectors are bit-identical), and in marsbench's.
        in_ref_order = [ours_row[k] for k in ref_keys]
        table += [
            (
                "reference evaluator, marsbench vectors, ref rows",
                reference_ranks_of(repo, python, images[in_ref_order], texts[in_ref_order])["metrics"],
            ),
            (
                "reference evaluator, marsbench vectors, key rows",
                reference_ranks_of(repo, python, images, texts)["metrics"],
            ),
        ]
    if args.disable_cpu_features:
        # The same evaluator with some of numpy's SIMD kernels switched off: its argsort then
        # places exactly tied items differently (numpy's CPU dispatch, not the data, decides).
        env = {"NPY_DISABLE_CPU_FEATURES": args.disable_cpu_features}
        plain = reference_ranks(repo, python, db / "image_features.npy", db / "text_features.npy", env)
        table.append(("reference evaluator, its db, fewer SIMD kernels", plain["metrics"]))
    table += [
        ("marsbench run record", record["metrics"]),
        ("marsbench rule, its rows (key order)", paired_metrics(images, texts).as_dict()),
        ("marsbench rule, reference rows and vectors", paired_metrics(ref_images, ref_texts).as_dict()),
        ("  best case over tie orders", paired_metrics(ref_images, ref_texts, ties="optimistic").as_dict()),
        ("  worst case over tie orders", paired_metrics(ref_images, ref_texts, ties="pessimistic").as_dict()),
    ]
    print()
    if args.disable_cpu_features:
        print(f"(fewer SIMD kernels: NPY_DISABLE_CPU_FEATURES={args.disable_cpu_features!r})")
    print(f"{'':<48}" + "".join(f" {m:>10}" for m in METRICS))
    for label, values in table:
        print(_metrics_line(label, values))

    scores = ref_images @ ref_texts.T
    low = paired_ranks(ref_images, ref_texts, ties="optimistic")
    high = paired_ranks(ref_images, ref_texts, ties="pessimistic")
    ours_i2t, ours_t2i = paired_ranks(images, texts)
    for direction, theirs, ours, tied, lo, hi in (
        ("i2t", ref_i2t, ours_i2t, _ties_with_partner(scores), low[0], high[0]),
        ("t2i", ref_t2i, ours_t2i, _ties_with_partner(scores.T), low[1], high[1]),
    ):
        mine_by_ref_row = np.array([ours[ours_row[k]] if k in ours_row else -1 for k in ref_keys])
        differ = np.flatnonzero(mine_by_ref_row != theirs)
        in_ties = differ[tied[differ] > 0]
        bounded = np.all((theirs >= lo) & (theirs <= hi))
        print(
            f"\n{direction}: {int(np.sum(tied > 0))} of {len(ref_keys)} queries have a partner tied "
            f"exactly with other items; ranks differ for {len(differ)} queries, {len(in_ties)} of them "
            f"inside a tie; every reference rank within its tie bounds: {bool(bounded)}"
        )
        problems += len(differ) > 0
        for row in differ[: args.show]:
            print(
                f"  {ref_keys[row]}: marsbench rank {mine_by_ref_row[row]}, reference {theirs[row]}, "
                f"{tied[row]} item(s) tied with the partner, possible ranks {lo[row]}..{hi[row]}"
            )
    return 1 if problems else 0


def _order_runs(keys: Sequence[str]) -> str:
    """`first..last (n)` for each stretch of keys that follow one another in sorted order."""
    order = {k: i for i, k in enumerate(sorted(set(keys)))}
    runs: list[list[str]] = []
    for key in keys:
        if runs and order[key] == order[runs[-1][-1]] + 1:
            runs[-1].append(key)
        else:
            runs.append([key])
    return ", ".join(f"{r[0]}..{r[-1]} ({len(r)})" for r in runs)


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    prepare = commands.add_parser("prepare", help="Write a checkpoint and a paired dataset.")
    prepare.add_argument("--out", required=True, type=Path)
    prepare.add_argument("--arch", default="ViT-S-32", help="open_clip architecture (random init).")
    prepare.add_argument("--seed", type=int, default=0, help="torch seed of the weights and the data's seed.")
    prepare.add_argument("--scale", default="small", choices=("small", "medium"), help="synthesize() scale.")
    prepare.add_argument(
        "--dataset", type=Path, help="An existing paired dataset folder: do not synthesize one."
    )
    prepare.add_argument(
        "--edge-case",
        choices=sorted(EDGE_CASES),
        help="Also write a copy with one known source of divergence: "
        + "; ".join(f"{k}: {v}" for k, v in EDGE_CASES.items()),
    )
    prepare.set_defaults(func=cmd_prepare)

    reference = commands.add_parser("reference", help="Run the reference's main.py for one caption key.")
    reference.add_argument("--repo", required=True, type=Path, help="The reference checkout.")
    reference.add_argument("--python", required=True, type=Path, help="The reference environment's python.")
    reference.add_argument("--dataset", required=True, type=Path, help="The paired dataset folder (shards).")
    reference.add_argument("--checkpoint", required=True, type=Path)
    reference.add_argument("--arch", default="ViT-S-32")
    reference.add_argument("--caption-key", required=True, help="e.g. " + ", ".join(CAPTION_KEYS))
    reference.add_argument(
        "--db-dir", required=True, type=Path, help="A fresh folder per dataset and caption key."
    )
    reference.add_argument("--output-dir", required=True, type=Path)
    reference.add_argument("--save-details", action="store_true", help="Also save the top-k CSVs.")
    reference.add_argument("--reuse-db", action="store_true", help="Allow a --db-dir that holds a database.")
    reference.add_argument("--dry-run", action="store_true", help="Print what would run.")
    reference.set_defaults(func=cmd_reference)

    compare = commands.add_parser("compare", help="Compare a marsbench run record with a reference log.")
    compare.add_argument("--record", required=True, type=Path, help="Run record JSON, or its --out folder.")
    compare.add_argument(
        "--reference-log",
        required=True,
        type=Path,
        help="The reference's retrieval.log, or a folder above it.",
    )
    compare.add_argument(
        "--reference-db",
        type=Path,
        help="The reference's --db_dir, for its pair count (default: from the sidecar).",
    )
    compare.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    compare.set_defaults(func=cmd_compare)

    diagnose = commands.add_parser("diagnose", help="Find where a marsbench run and a reference run part.")
    diagnose.add_argument("--record", required=True, type=Path, help="Run record JSON, or its --out folder.")
    diagnose.add_argument("--data-dir", required=True, type=Path, help="The run's marsbench --data-dir.")
    diagnose.add_argument("--reference-db", required=True, type=Path, help="The reference's --db_dir.")
    diagnose.add_argument("--reference-repo", required=True, type=Path)
    diagnose.add_argument("--reference-python", required=True, type=Path)
    diagnose.add_argument("--show", type=int, default=10, help="Differing queries to list per direction.")
    diagnose.add_argument(
        "--disable-cpu-features",
        metavar="FEATURES",
        help="Also run the reference's evaluator with NPY_DISABLE_CPU_FEATURES=FEATURES "
        "(numpy 2.4 on x86: 'X86_V3 X86_V4 AVX512_ICL AVX512_SPR' for its baseline sort).",
    )
    diagnose.set_defaults(func=cmd_diagnose)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

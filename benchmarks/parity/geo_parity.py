r"""Parity of `marsbench run geolocalization` with the MarsRetrieval reference, on the same data and weights.

    python benchmarks/parity/geo_parity.py prepare --out /tmp/geoparity
    marsbench run geolocalization --dataset-dir /tmp/geoparity/geo/dataset --model open_clip:ViT-S-32 \
        --checkpoint /tmp/geoparity/ViT-S-32-seed0.pt --out /tmp/geoparity/runs \
        --data-dir /tmp/geoparity/state
    (the reference's own main.py, once per landform and query mode, with --output_dir
     /tmp/geoparity/reflogs/<landform>/<mode> --save_details; see docs/parity.md)
    python benchmarks/parity/geo_parity.py compare --records /tmp/geoparity/runs \
        --reference /tmp/geoparity/reflogs --reference-repo REPO --reference-python PYTHON

`prepare` writes an open_clip training checkpoint of a randomly initialised architecture (fixed
torch seed; the landform check's helper, so both checks use byte-identical weights) and one
geo-localization dataset in the published layout from `marsbench.datasets.synth.synthesize`
(`geo/dataset/`: WebDataset shards of PNG tiles under `tiles/image_size_512_delta_0.2/thumb/
<source>/`, `ground_truth/<landform>.csv`, `image_queries/<landform>/*.png`).
`--edge-case CASE` writes a modified copy beside it (`edge-<case>/geo/dataset`) that adds one
known source of divergence (exact score ties, catalogue points on the radius).

`compare` reads marsbench's run records (`geolocalization-*.json`: `landform`, `query_mode`,
`metrics` {f1, precision, recall, k, auprc}) and, for each (landform, mode), the reference's
`retrieval.log` under `<reference>/<landform>/<mode>/`. That log holds the best F1, its k,
precision and recall at full precision (`Evaluation summary: {...}`), but the AUPRC only to 4
decimals (`... | AUPRC=0.0222`; the summary CSV rounds everything to 2 decimals of a percent). The
full-precision AUPRC is therefore recomputed by the reference's own evaluator
(`evaluators.geolocalization_evaluator.GeoLocalizationEvaluator`, imported from `--reference-repo`
and run by `--reference-python`) on the ranking the reference saved with `--save_details`; the
recomputation must reproduce the logged best exactly and the logged AUPRC to 4 decimals, or
`compare` stops. It prints a side-by-side table and exits 1 on any difference over the tolerance
(1e-6), a differing k, a run missing on one side, or an AUPRC it could only check to 4 decimals.

`diagnose` explains a difference for one (landform, mode): tile names, coordinates and
embeddings (the reference's database folder against marsbench's store), the query's scores
(marsbench's query, built by the evaluator's own code, against the reference's saved
similarities), both final rankings and their tie groups, and the precision/recall curve at every
grid k on both sides.
"""

from __future__ import annotations

import argparse
import ast
import csv
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

# The landform check's helpers (its checkpoint writer and log parsing), so that both checks share
# byte-identical weights and one reading of the reference's log. Not a package: import by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from landform_parity import NUMPY_SCALAR, SUMMARY_MARKER, write_checkpoint

if TYPE_CHECKING:
    from marsbench.store import VectorStore

LANDFORMS: tuple[str, ...] = ("alluvial_fans", "glacier-like_form", "landslides", "pitted_cones", "yardangs")
MODES: tuple[str, ...] = ("text", "image", "hybrid")
METRICS: tuple[str, ...] = ("f1", "precision", "recall", "k", "auprc")
DEFAULT_TOLERANCE = 1e-6
# The reference's defaults (configs/task/global_geolocalization.py): radius_deg, eval_max_k.
REFERENCE_RADIUS_DEG = 0.5
REFERENCE_EVAL_MAX_K = 20_000
# The reference logs "[<mode>] Best F1=%.4f at K=%s (precision=%.4f, recall=%.4f) | AUPRC=%.4f".
BEST_LINE_MARKER = "] Best F1="
AUPRC_MARKER = "| AUPRC="
LOGGED_AUPRC_DECIMALS = 4
THUMB = Path("tiles") / "image_size_512_delta_0.2" / "thumb"


# ----------------------------------------------------------------------------- prepare


def synthesized_geo(out: Path, *, scale: str, seed: int) -> Path:
    """`synthesize(out, tasks=("geo",))`: the geo dataset folder (`out/geo/dataset`)."""
    from marsbench.datasets.synth import synthesize

    summary = synthesize(out, scale=scale, seed=seed, tasks=("geo",))  # type: ignore[arg-type]
    if summary.geo is None:
        raise SystemExit(f"synthesize() wrote no geo dataset under {out}")
    return Path(summary.geo.dataset_dir)


def _tile_corner(name: str) -> tuple[float, float]:
    from marsbench.datasets.coords import parse_tile_name

    return parse_tile_name(name)


def _tile_name(lon: float, lat: float) -> str:
    from marsbench.datasets.coords import tile_name

    return tile_name(lon, lat)


def _read_tiles(dataset: Path) -> list[tuple[str, bytes]]:
    """(name, PNG bytes) of every tile in the dataset's shards, in shard order."""
    tiles: list[tuple[str, bytes]] = []
    for shard in sorted((dataset / THUMB).rglob("*.tar"), key=str):
        with tarfile.open(shard) as tar:
            for member in tar:
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is not None and member.name.endswith(".png"):
                    tiles.append((member.name.rpartition("/")[2], handle.read()))
    return tiles


def _write_shard(path: Path, members: Sequence[tuple[str, bytes]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 946684800, 0o644
            tar.addfile(info, io.BytesIO(data))


def _ground_truth(dataset: Path, landform: str) -> list[tuple[float, float]]:
    with (dataset / "ground_truth" / f"{landform}.csv").open(newline="") as f:
        return [(float(row["lon"]), float(row["lat"])) for row in csv.DictReader(f)]


def _write_ground_truth(dataset: Path, landform: str, points: Sequence[tuple[float, float]]) -> None:
    lines = ["lon,lat,name"] + [f"{lon!r},{lat!r},{landform}_{i:03d}" for i, (lon, lat) in enumerate(points)]
    (dataset / "ground_truth" / f"{landform}.csv").write_text("\n".join(lines) + "\n")


EDGE_CASES: dict[str, str] = {
    "ties": "byte-identical copies of each landform's hit tiles under far-away names (exact score ties "
    "between a hit and a non-hit tile), in an extra source folder",
    "boundary": "each catalogue gets extra points exactly 0.5 degrees (in degrees) from a tile corner, "
    "where the reference's pixel-space test decides (the tiles are unchanged)",
}
TIES_PER_LANDFORM = 6
TIES_LON_OFFSET = 30.0  # degrees east of the region: no catalogue point is near a copy


def with_edge_case(clean: Path, target: Path, case: str) -> None:
    """A copy of the clean dataset at `target` with one edge case added; deterministic."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(clean, target)
    tiles = _read_tiles(clean)
    if case == "ties":
        copies: list[tuple[str, bytes]] = []
        for landform in LANDFORMS:
            points = _ground_truth(clean, landform)
            hits = [
                (name, data)
                for name, data in tiles
                if any(math.dist(_tile_corner(name), p) < 0.45 for p in points)
            ]
            for name, data in hits[:TIES_PER_LANDFORM]:
                lon, lat = _tile_corner(name)
                copies.append((_tile_name(lon + TIES_LON_OFFSET, lat), data))
        _write_shard(target / THUMB / "synth_ctx_copies" / "000000.tar", copies)
    elif case == "boundary":
        corners = sorted(_tile_corner(name) for name, _ in tiles)
        for landform in LANDFORMS:
            points = _ground_truth(clean, landform)
            extra = []
            for lon, lat in points[:4]:
                # The tile corner nearest the point, then points 0.5 degrees east, north, west, south.
                cx, cy = min(corners, key=lambda c: math.dist(c, (lon, lat)))
                extra += [(cx + 0.5, cy), (cx, cy + 0.5), (cx - 0.5, cy), (cx, cy - 0.5)]
            _write_ground_truth(target, landform, [*points, *extra])
    else:
        raise ValueError(f"unknown edge case {case!r}")
    synth_json = target.parent / "synth.json"
    if synth_json.exists():
        synth_json.unlink()


def cmd_prepare(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / f"{args.arch}-seed{args.seed}.pt"
    write_checkpoint(args.arch, args.seed, checkpoint)
    print(f"checkpoint: {checkpoint}")
    dataset = args.dataset or synthesized_geo(out, scale=args.scale, seed=args.seed)
    print(f"dataset: {dataset}")
    if args.edge_case:
        target = out / f"edge-{args.edge_case}" / "geo" / "dataset"
        with_edge_case(dataset, target, args.edge_case)
        print(f"edge case {args.edge_case}: {target}")
    return 0


# ----------------------------------------------------------------------------- marsbench records


def load_records(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(landform, mode) -> the newest geolocalization run record in `path` (a file or an --out folder)."""
    files = [path] if path.is_file() else sorted(path.glob("geolocalization-*.json"))
    records: dict[tuple[str, str], dict[str, Any]] = {}
    for file in files:
        record = json.loads(file.read_text())
        if record.get("task") != "geolocalization":
            continue
        key = (str(record["landform"]), str(record["query_mode"]))
        if key not in records or str(record["created_at"]) > str(records[key]["created_at"]):
            record["_path"] = str(file)
            records[key] = record
    if not records:
        raise SystemExit(f"no geolocalization run record in {path}")
    return records


# ----------------------------------------------------------------------------- reference outputs


@dataclass(frozen=True)
class ReferenceRun:
    """What one reference run left in its --output_dir."""

    folder: Path
    label: str  # the query mode the reference logged
    best: dict[str, float]  # k, f1, precision, recall at full precision (from the log)
    logged_auprc: str  # the AUPRC as logged, 4 decimals
    details: Path | None  # the ranking it saved with --save_details (<timestamp>.csv)


def reference_run(folder: Path) -> ReferenceRun:
    """The last run logged in `folder/retrieval.log` (the reference appends to its log)."""
    log = folder / "retrieval.log"
    if not log.is_file():
        raise FileNotFoundError(log)
    lines = log.read_text().splitlines()
    summaries = [i for i, line in enumerate(lines) if SUMMARY_MARKER in line and "{" in line]
    if not summaries:
        raise SystemExit(f"no '{SUMMARY_MARKER.strip()}' line in {log}")
    last = summaries[-1]
    text = NUMPY_SCALAR.sub(r"\1", lines[last].split(SUMMARY_MARKER, 1)[1].strip())
    best = ast.literal_eval(text)
    if not isinstance(best, dict) or not {"k", "f1", "precision", "recall"} <= set(best):
        raise SystemExit(f"unexpected evaluation summary in {log}: {text}")
    best_lines = [line for line in lines[:last] if BEST_LINE_MARKER in line and AUPRC_MARKER in line]
    if not best_lines:
        raise SystemExit(f"no 'Best F1=... | AUPRC=...' line before the summary in {log}")
    label = best_lines[-1].split("[")[-1].split("]")[0]
    logged_auprc = best_lines[-1].rsplit(AUPRC_MARKER, 1)[1].strip()
    # Its details CSV is named by the run's timestamp; the newest belongs to the last run.
    details = sorted(folder.glob("[0-9]*.csv"))
    return ReferenceRun(
        folder, label, {k: float(v) for k, v in best.items()}, logged_auprc, (details or [None])[-1]
    )


# Run by the reference's Python in the reference's checkout: its own evaluator on the ranking it
# saved. eval_points_coverage is wrapped (not changed) to record the tiles of its last call, which
# is the evaluator's own sorted ranking cut at max_k; nothing of the reference is re-implemented.
_REFERENCE_EVALUATION = r"""
import json, logging, sys
import pandas as pd
spec = json.loads(sys.argv[1])
sys.path.insert(0, spec["repo"])
logging.disable(logging.CRITICAL)
import evaluators.geolocalization_evaluator as geo
seen = {}
original = geo.eval_points_coverage
def recording(gt_df, pred_df, *args, **kwargs):
    seen["pred"] = pred_df
    return original(gt_df, pred_df, *args, **kwargs)
geo.eval_points_coverage = recording
evaluator = geo.GeoLocalizationEvaluator(
    gt_csv_path=spec["ground_truth"], radius_deg=spec["radius_deg"], max_k=spec["max_k"])
# round_trip: the CSV holds each float's shortest repr, so this reads back the run's exact values.
frame = pd.read_csv(spec["details"], float_precision="round_trip", dtype={"image_name": str})
result = evaluator.evaluate(frame, label="recomputed")
pred = seen.get("pred")
print(json.dumps({
    "best": {k: float(v) for k, v in (result.get("best") or {}).items()},
    "auprc": float(result["auprc"]),
    "curve": [{k: float(c[k]) for k in ("k", "precision", "recall", "f1")} for c in result["curve"]],
    "order": [] if pred is None else pred["image_name"].astype(str).tolist(),
    "similarity": [] if pred is None else [float(s) for s in pred["similarity"]],
}))
"""


def reference_evaluation(
    run: ReferenceRun,
    *,
    repo: Path,
    python: Path,
    ground_truth: Path,
    radius_deg: float,
    max_k: int,
) -> dict[str, Any]:
    """The reference's evaluator on its own saved ranking, checked against what it logged."""
    if run.details is None:
        raise SystemExit(f"no details CSV in {run.folder}: run the reference with --save_details")
    spec = {
        "repo": str(repo.resolve()),
        "ground_truth": str(ground_truth),
        "details": str(run.details),
        "radius_deg": radius_deg,
        "max_k": max_k,
    }
    done = subprocess.run(
        [str(python), "-c", _REFERENCE_EVALUATION, json.dumps(spec)],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    if done.returncode != 0:
        raise SystemExit(f"the reference's evaluator failed on {run.details}:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["best"] != run.best:
        raise SystemExit(
            f"recomputing {run.folder} does not reproduce its logged best ({result['best']} vs {run.best}): "
            "wrong ground truth, --reference-radius-deg or --reference-eval-max-k?"
        )
    if f"{result['auprc']:.{LOGGED_AUPRC_DECIMALS}f}" != run.logged_auprc:
        raise SystemExit(
            f"recomputing {run.folder} gives AUPRC {result['auprc']!r}, but it logged {run.logged_auprc}"
        )
    return result


# Run by the reference's Python in the reference's checkout (diagnose only): main.py's own argument
# parsing and config merge, its encoders and its query builder, then a faiss IndexFlatIP over the
# database it saved. Returns the query vector and the unrounded score of every tile.
_REFERENCE_QUERY = r"""
import json, logging, sys
spec = json.loads(sys.argv[1])
sys.path.insert(0, spec["repo"])
logging.disable(logging.CRITICAL)
import faiss, numpy as np, torch
sys.argv = ["main.py", *spec["argv"]]
import main
from configs.config_base import load_task_config, load_model_config, merge_configs
from tools.utils import _merge_args, random_seed
from models.utils import build_image_encoder, build_text_encoder
from queries.utils import build_query
dynamic = main._parse_args()
config = merge_configs(load_task_config(dynamic.task_config), load_model_config(dynamic.model_config))
args = _merge_args(config, dynamic)
device = torch.device("cpu")
random_seed(args.seed)
image_encoder = build_image_encoder(args, device)
text_encoder = build_text_encoder(args, device) if dynamic.query_mode in ("text", "hybrid") else None
query = build_query(
    args, image_encoder=image_encoder, text_encoder=text_encoder, query_mode=dynamic.query_mode,
    query_images=dynamic.query_images or [], query_name=dynamic.query_text,
)
features = np.load(spec["features"])
index = faiss.IndexFlatIP(features.shape[1])
index.add(features)
scores, ids = index.search(query.astype("float32"), features.shape[0])
vector = query[0].astype("float32").tolist()
print(json.dumps({"query": vector, "scores": scores[0].tolist(), "ids": ids[0].tolist()}))
"""


def _reference_argv(record: Mapping[str, Any], dataset: Path) -> list[str]:
    """main.py's arguments for the record's model, checkpoint, landform and mode."""
    model = str(record["model"])
    if not model.startswith("open_clip:") or "@" not in model:
        raise SystemExit(f"diagnose handles open_clip:<arch>@<checkpoint> models, not {model!r}")
    arch, checkpoint = model.removeprefix("open_clip:").split("@", 1)
    landform, mode = str(record["landform"]), str(record["query_mode"])
    return [
        "--task_config", "GlobalGeoLocalization", "--model_config", "OpenCLIP",
        "--model_name", arch.split(":")[0], "--pretrained", "", "--resume_post_train", checkpoint,
        "--image_encoder_type", "openclip", "--text_encoder_type", "openclip",
        "--query_mode", mode, "--query_text", landform,
        "--query_images", str(dataset / "image_queries" / landform),
        "--db_dir", "/nonexistent", "--output_dir", "/nonexistent",
    ]  # fmt: skip


def reference_query(record: Mapping[str, Any], *, repo: Path, python: Path, db_dir: Path) -> dict[str, Any]:
    """The reference's query vector and its faiss scores over its saved database."""
    spec = {
        "repo": str(repo.resolve()),
        "argv": _reference_argv(record, Path(record["dataset_dir"])),
        "features": str((db_dir / "features.npy").resolve()),
    }
    done = subprocess.run(
        [str(python), "-c", _REFERENCE_QUERY, json.dumps(spec)],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    if done.returncode != 0:
        raise SystemExit(f"the reference's query builder failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ----------------------------------------------------------------------------- compare


@dataclass(frozen=True)
class Row:
    landform: str
    mode: str
    metric: str
    ours: float | None
    reference: float | None
    source: str  # where the reference value comes from

    @property
    def diff(self) -> float:
        if self.ours is None or self.reference is None:
            return math.inf
        return abs(self.ours - self.reference)

    def fails(self, tolerance: float) -> bool:
        if self.metric == "k":
            return self.diff != 0
        return self.diff > tolerance or self.source == "log (4 decimals)"


def comparison_rows(
    landform: str, mode: str, record: Mapping[str, Any] | None, run: ReferenceRun | None, auprc: float | None
) -> Iterator[Row]:
    ours = (record or {}).get("metrics") or {}
    for metric in METRICS:
        mine = ours.get(metric)
        mine = float(mine) if isinstance(mine, int | float) else None
        if run is None:
            yield Row(landform, mode, metric, mine, None, "missing")
        elif metric != "auprc":
            yield Row(landform, mode, metric, mine, run.best[metric], "log summary")
        elif auprc is not None:
            yield Row(landform, mode, metric, mine, auprc, "reference evaluator")
        else:
            yield Row(landform, mode, metric, mine, float(run.logged_auprc), "log (4 decimals)")


def _cell(value: float | None, metric: str) -> str:
    if value is None:
        return "missing"
    return f"{int(value)}" if metric == "k" else f"{value:.12f}"


def render(rows: Sequence[Row], tolerance: float) -> str:
    width = max([len("landform"), *(len(r.landform) for r in rows)])
    lines = [
        f"{'landform':<{width}}  {'mode':<6}  {'metric':<9}  {'marsbench':>14}  {'reference':>14}  "
        f"{'abs diff':>9}  reference value from"
    ]
    for row in rows:
        flag = "  <-- differs" if row.fails(tolerance) else ""
        diff = "inf" if math.isinf(row.diff) else f"{row.diff:.2e}"
        lines.append(
            f"{row.landform:<{width}}  {row.mode:<6}  {row.metric:<9}  {_cell(row.ours, row.metric):>14}  "
            f"{_cell(row.reference, row.metric):>14}  {diff:>9}  {row.source}{flag}"
        )
    return "\n".join(lines)


def summary_table(rows: Sequence[Row]) -> str:
    """One line per (landform, mode): k on both sides and the largest difference of f1/P/R/AUPRC."""
    lines = ["| landform | mode | k (marsbench / reference) | best F1 (both) | max abs diff, f1/P/R/AUPRC |",
             "|---|---|---|---|---|"]  # fmt: skip
    keys = sorted({(r.landform, r.mode) for r in rows}, key=lambda k: (k[0], MODES.index(k[1])))
    for landform, mode in keys:
        mine = {r.metric: r for r in rows if (r.landform, r.mode) == (landform, mode)}
        k = mine["k"]
        diffs = [mine[m].diff for m in METRICS if m != "k"]
        f1 = mine["f1"].reference if mine["f1"].reference is not None else math.nan
        lines.append(
            f"| {landform} | {mode} | {_cell(k.ours, 'k')} / {_cell(k.reference, 'k')} | {f1:.6f} "
            f"| {max(diffs):.1e} |"
        )
    return "\n".join(lines)


def cmd_compare(args: argparse.Namespace) -> int:
    records = load_records(args.records)
    reference: Path = args.reference
    single = (reference / "retrieval.log").is_file()
    if single and len(records) != 1:
        raise SystemExit(
            f"{reference} holds one reference run, but {args.records} holds {len(records)} records: "
            "pass one record file, or a --reference folder laid out as <landform>/<mode>/"
        )
    wanted = sorted(records) if single else [(lf, m) for lf in LANDFORMS for m in MODES]
    extra = sorted(set(records) - set(wanted))
    rows: list[Row] = []
    for landform, mode in [*wanted, *extra]:
        record = records.get((landform, mode))
        folder = reference if single else reference / landform / mode
        try:
            run: ReferenceRun | None = reference_run(folder)
        except FileNotFoundError:
            run = None
        if record is None and run is None:
            continue
        if run is not None and run.label != mode:
            raise SystemExit(f"{folder}: the reference logged query mode {run.label!r}, expected {mode!r}")
        auprc = None
        if run is not None and record is not None and args.reference_python is not None:
            ground_truth = args.ground_truth or Path(record["dataset_dir"])
            if ground_truth.is_dir():
                ground_truth = ground_truth / "ground_truth" / f"{landform}.csv"
            auprc = reference_evaluation(
                run,
                repo=args.reference_repo,
                python=args.reference_python,
                ground_truth=ground_truth,
                radius_deg=args.reference_radius_deg,
                max_k=args.reference_eval_max_k,
            )["auprc"]
        rows += comparison_rows(landform, mode, record, run, auprc)
    print(render(rows, args.tolerance))
    print()
    print(summary_table(rows))
    finite = [r.diff for r in rows if r.metric != "k" and not math.isinf(r.diff)]
    pairs = {(r.landform, r.mode) for r in rows}
    print(f"\n{len(pairs)} (landform, mode) pairs; max abs diff {max(finite, default=0.0):.3e}; "
          f"tolerance {args.tolerance:g}")  # fmt: skip
    missing = sorted({(r.landform, r.mode) for r in rows if math.isinf(r.diff)})
    if missing:
        print("missing on one side: " + ", ".join(f"{lf} {m}" for lf, m in missing))
    if any(r.source == "log (4 decimals)" for r in rows):
        print("AUPRC compared with the log's 4 decimals only: pass --reference-repo and --reference-python "
              "(and run the reference with --save_details) to check it to the tolerance")  # fmt: skip
    failing = [r for r in rows if r.fails(args.tolerance)]
    if failing:
        print(f"PARITY FAILED: {len(failing)} value(s) differ, are missing, or could not be checked")
        return 1
    print("PARITY OK")
    return 0


# ----------------------------------------------------------------------------- diagnose


class _LocalEncoder:
    """The evaluator's QueryEncoder, in process: the encoder service's decode, preprocess and model."""

    def __init__(self, model: Any, max_pixels: int) -> None:
        self._model = model
        self._max_pixels = max_pixels

    def embed_texts(self, model: str, texts: Sequence[str]) -> np.ndarray:
        vectors: np.ndarray = self._model.embed_texts(list(texts))
        return vectors

    def embed_images(
        self, model: str, images: Sequence[bytes], names: Sequence[str] | None = None
    ) -> np.ndarray:
        import torch

        from marsbench.encoder.core.images import decode_image

        pixels = [
            self._model.preprocess_image(decode_image(data, i, max_pixels=self._max_pixels))
            for i, data in enumerate(images)
        ]
        vectors: np.ndarray = self._model.embed_images(torch.stack(pixels))
        return vectors


def _our_query(record: Mapping[str, Any]) -> np.ndarray:
    """The query vector as the evaluator builds it (its build_geo_query, the record's settings)."""
    from marsbench.encoder.adapters.base import RuntimeOptions
    from marsbench.encoder.adapters.open_clip import OpenClipModel
    from marsbench.encoder.registry import resolve_model
    from marsbench.encoder.settings import EncoderSettings
    from marsbench.evaluator.core.tasks.geo import build_geo_query
    from marsbench.schemas.runs import QueryMode, RunCreate, TaskName

    settings = record.get("settings") or {}
    request = RunCreate(
        task=TaskName.GEOLOCALIZATION,
        model=str(record["model"]),
        dataset_dir=str(record["dataset_dir"]),
        landform=str(record["landform"]),
        query_mode=QueryMode(str(record["query_mode"])),
        top_k=int(settings.get("top_k", REFERENCE_EVAL_MAX_K)),
        radius_deg=float(settings.get("radius_deg", REFERENCE_RADIUS_DEG)),
        mix_ratio=float(settings.get("mix_ratio", 0.3)),
        temperature=float(settings.get("temperature", 0.1)),
    )
    model = OpenClipModel.load(resolve_model(str(record["model"])), RuntimeOptions(device="cpu"))
    encoder = _LocalEncoder(model, EncoderSettings().max_image_pixels)
    query = build_geo_query(encoder, request.model, Path(request.dataset_dir), request)
    return np.asarray(query.vector, dtype=np.float32)


@dataclass(frozen=True)
class Tile:
    name: str  # the bare tile name (the reference's key)
    lon: float
    lat: float
    vector: np.ndarray


def _stored_tiles(store: VectorStore, collection: str) -> dict[str, Tile]:
    """Point id -> the tile marsbench indexed."""
    tiles = {}
    for point in store.scroll(collection, with_vectors=True):
        location = point.payload["location"]
        tiles[point.id] = Tile(
            str(point.payload["name"]), float(location["lon"]), float(location["lat"]), point.vectors["image"]
        )
    return tiles


def _reference_database(db_dir: Path) -> tuple[np.ndarray, list[str], list[tuple[float, float]]]:
    """features.npy, metadata.pkl (tile names), coordinates.pkl of a reference run.

    They are pickles the reference wrote on this machine; only load ones you produced yourself.
    """
    import pickle

    features = np.load(db_dir / "features.npy").astype(np.float32)
    with (db_dir / "metadata.pkl").open("rb") as f:
        names = [str(n) for n in pickle.load(f)]
    with (db_dir / "coordinates.pkl").open("rb") as f:
        coords = [(float(lon), float(lat)) for lon, lat in pickle.load(f)]
    return features, names, coords


def _our_ranking(
    record: Mapping[str, Any], store: VectorStore, query: np.ndarray, names_by_id: Mapping[str, str]
) -> tuple[list[str], list[float], list[tuple[float, float]], dict[str, float]]:
    """Tile names, rounded scores and (lon, lat) in the evaluator's parity order; raw scores by name."""
    from marsbench.evaluator.core.tasks.geo import SCORE_DECIMALS, ranked_locations

    settings = record.get("settings") or {}
    hits = store.search_batch(
        str(record["collection"]),
        query[None, :],
        using="image",
        limit=int(settings.get("top_k", REFERENCE_EVAL_MAX_K)),
        exact=True,
    )[0]
    scores = np.round(np.array([h.score for h in hits], dtype=np.float64), SCORE_DECIMALS)
    # The evaluator's order rule (a stable sort of the rounded scores over the store's order);
    # checked against its own ranked_locations below.
    order = np.argsort(-scores, kind="stable")
    names = [names_by_id[hits[i].id] for i in order.tolist()]
    lonlat = [
        (float(hits[i].payload["location"]["lon"]), float(hits[i].payload["location"]["lat"])) for i in order
    ]
    if not np.array_equal(np.asarray(lonlat).reshape(-1, 2), ranked_locations(hits)):
        raise SystemExit("the evaluator's ranked_locations orders the hits differently from this diagnosis")
    raw = {names_by_id[h.id]: float(h.score) for h in hits}
    return names, [float(scores[i]) for i in order.tolist()], lonlat, raw


def _tie_groups(names: Sequence[str], scores: Sequence[float]) -> list[tuple[int, int]]:
    """[start, end) rank ranges (0-based) of runs of equal rounded scores longer than one."""
    groups, start = [], 0
    for i in range(1, len(scores) + 1):
        if i == len(scores) or scores[i] != scores[start]:
            if i - start > 1:
                groups.append((start, i))
            start = i
    return groups


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Where one marsbench run and one reference run part."""
    from marsbench.evaluator.metrics.geo import parity_curve
    from marsbench.store import open_store

    records = load_records(args.record)
    if len(records) != 1 and (args.landform is None or args.mode is None):
        raise SystemExit(f"{args.record} holds {len(records)} records: pass --landform and --mode")
    record = records[(args.landform, args.mode)] if len(records) != 1 else next(iter(records.values()))
    landform, mode = str(record["landform"]), str(record["query_mode"])
    run = reference_run(args.reference)
    ground_truth = args.ground_truth or Path(record["dataset_dir"]) / "ground_truth" / f"{landform}.csv"
    theirs = reference_evaluation(
        run,
        repo=args.reference_repo,
        python=args.reference_python,
        ground_truth=ground_truth,
        radius_deg=args.reference_radius_deg,
        max_k=args.reference_eval_max_k,
    )
    print(f"{landform} {mode}: marsbench {record['_path']}, reference {run.folder}")
    problems = 0

    store = open_store(qdrant_url=None, data_dir=args.data_dir)
    try:
        stored = _stored_tiles(store, str(record["collection"]))
        query = _our_query(record)
        names_by_id = {pid: tile.name for pid, tile in stored.items()}
        our_names, our_scores, our_lonlat, our_raw = _our_ranking(record, store, query, names_by_id)
    finally:
        store.close()

    # Tiles: names, coordinates, embeddings.
    ours = {}
    for tile in stored.values():
        ours.setdefault(tile.name, []).append(tile)
    features, ref_names, ref_coords = _reference_database(args.reference_db)
    repeats = Counter(ref_names)
    print(
        f"tiles: marsbench {len(stored)} ({len(ours)} names), "
        f"reference {len(ref_names)} ({len(repeats)} names)"
    )
    for label, names in (
        ("only in marsbench", sorted(set(ours) - set(ref_names))),
        ("only in reference", sorted(set(ref_names) - set(ours))),
        ("repeated in reference", sorted(n for n, c in repeats.items() if c > 1)),
        ("repeated in marsbench", sorted(n for n, t in ours.items() if len(t) > 1)),
    ):
        if names:
            problems += 1
            print(f"  {label}: {len(names)}: {', '.join(names[:10])}")
    common = [i for i, n in enumerate(ref_names) if repeats[n] == 1 and len(ours.get(n, [])) == 1]
    coord_diff = [
        i for i in common if (ours[ref_names[i]][0].lon, ours[ref_names[i]][0].lat) != ref_coords[i]
    ]
    print(f"  coordinates: {len(common) - len(coord_diff)} of {len(common)} shared tiles identical")
    problems += bool(coord_diff)
    if common:
        delta = np.abs(np.stack([ours[ref_names[i]][0].vector for i in common]) - features[common])
        identical = int(np.sum(np.all(delta == 0, axis=1)))
        print(f"  embeddings: max |diff| {delta.max():.3e}, {identical} of {len(common)} bit-identical")

    # The query and the raw scores: marsbench's query (the evaluator's build_geo_query) and store
    # scores against the reference's query (its own build_query) and faiss scores over its database.
    ref_q = reference_query(
        record, repo=args.reference_repo, python=args.reference_python, db_dir=args.reference_db
    )
    q_ref = np.asarray(ref_q["query"], dtype=np.float32)
    q_diff = np.abs(query - q_ref)
    print(
        f"query: max |diff| {q_diff.max():.3e}, "
        f"{int(np.sum(q_diff == 0))} of {q_diff.size} components identical"
    )
    faiss_score = {ref_names[i]: float(sc) for i, sc in zip(ref_q["ids"], ref_q["scores"], strict=True)}
    shared = [n for n in our_raw if n in faiss_score and repeats[n] == 1 and len(ours.get(n, [])) == 1]
    if shared:
        ref_index = {n: i for i, n in enumerate(ref_names)}
        ours_vec = np.stack([ours[n][0].vector for n in shared]).astype(np.float64)
        ref_vec = features[[ref_index[n] for n in shared]].astype(np.float64)
        exact_ours = ours_vec @ query.astype(np.float64)  # float64 dot of the float32 inputs
        exact_ref = ref_vec @ q_ref.astype(np.float64)
        store = np.array([our_raw[n] for n in shared])
        faiss_ = np.array([faiss_score[n] for n in shared])
        print(
            f"raw scores over {len(shared)} tiles: max |store - faiss| {np.abs(store - faiss_).max():.2e}; "
            f"of which query {np.abs(exact_ours - exact_ref).max():.2e} (float64 dots of the two queries), "
            f"store arithmetic {np.abs(store - exact_ours).max():.2e}, faiss arithmetic "
            f"{np.abs(faiss_ - exact_ref).max():.2e}"
        )
    # Rounded scores: the reference's saved similarities (= its faiss scores rounded) against ours.
    ref_score = dict(zip(theirs["order"], theirs["similarity"], strict=True))
    our_score = dict(zip(our_names, our_scores, strict=True))
    common_scored = [n for n in our_score if n in ref_score and repeats[n] == 1]
    score_diff = [abs(our_score[n] - ref_score[n]) for n in common_scored]
    moved = sum(d > 0 for d in score_diff)
    print(
        f"scores rounded to 6 decimals: max |diff| {max(score_diff, default=0.0):.1e} over "
        f"{len(common_scored)} tiles, {moved} differ (a raw score near a rounding boundary)"
    )

    # Rankings and tie groups.
    ref_order = theirs["order"]
    ties_ours = _tie_groups(our_names, our_scores)
    ties_ref = _tie_groups(ref_order, theirs["similarity"])
    print(f"rankings: marsbench {len(our_names)} tiles, {len(ties_ours)} tied groups; "
          f"reference {len(ref_order)} tiles, {len(ties_ref)} tied groups")  # fmt: skip
    first = next((i for i, (a, b) in enumerate(zip(our_names, ref_order, strict=False)) if a != b), None)
    if first is None and len(our_names) == len(ref_order):
        print("  same order")
    else:
        problems += 1
        first = first if first is not None else min(len(our_names), len(ref_order))
        where = next((g for g in ties_ref if g[0] <= first < g[1]), None)
        why = "inside a tie of equal rounded scores" if where else "different scores or tiles"
        print(f"  orders part at rank {first + 1}: {why}")
        for i in range(max(0, first - 1), min(len(our_names), len(ref_order), first + 3)):
            a, b = our_names[i], ref_order[i]
            print(
                f"    rank {i + 1}: marsbench {a} {our_scores[i]:.6f} (store {our_raw.get(a, math.nan)!r})"
                f" | reference {b} {theirs['similarity'][i]:.6f} (faiss {faiss_score.get(b, math.nan)!r})"
            )
        inside = sum(
            1 for i, (a, b) in enumerate(zip(our_names, ref_order, strict=False))
            if a != b and any(s <= i < e for s, e in ties_ref)
        )  # fmt: skip
        differing = sum(a != b for a, b in zip(our_names, ref_order, strict=False))
        print(f"  {differing} rank positions differ, {inside} of them inside reference tie groups")

    # Curves at every grid k.
    gt = np.array(_marsbench_ground_truth(ground_truth), dtype=np.float64).reshape(-1, 2)
    settings = record.get("settings") or {}
    curve = parity_curve(
        np.asarray(our_lonlat, dtype=np.float64).reshape(-1, 2),
        gt,
        radius_deg=float(settings.get("radius_deg", REFERENCE_RADIUS_DEG)),
        max_k=int(settings.get("top_k", REFERENCE_EVAL_MAX_K)),
    )
    ref_curve = theirs["curve"]
    our_k = [int(k) for k in curve.k]
    ref_k = [int(c["k"]) for c in ref_curve]
    if our_k != ref_k:
        problems += 1
        print(
            f"k grids differ: marsbench {our_k[:5]}... ({len(our_k)}), "
            f"reference {ref_k[:5]}... ({len(ref_k)})"
        )
    parted = []
    for i, c in enumerate(ref_curve[: len(our_k)]):
        dp, dr = abs(curve.precision[i] - c["precision"]), abs(curve.recall[i] - c["recall"])
        if max(dp, dr) > 0:
            parted.append((int(c["k"]), dp, dr))
    print(f"curve: {len(ref_curve)} grid points, {len(parted)} with a different precision or recall")
    for k, dp, dr in parted[:10]:
        span = [g for g in ties_ref if g[0] < k < g[1]]
        tie = f" (a reference tie group spans ranks {span[0][0] + 1}-{span[0][1]})" if span else ""
        print(f"  k={k}: |d precision| {dp:.3e}, |d recall| {dr:.3e}{tie}")
    problems += bool(parted)
    straddling = [g for g in ties_ref if any(g[0] < k < g[1] for k in ref_k)]
    print(f"reference tie groups that straddle a grid k: {len(straddling)}")
    print(f"best: marsbench {curve.as_dict()}, reference {theirs['best']} auprc {theirs['auprc']!r}")
    return 1 if problems else 0


def _marsbench_ground_truth(path: Path) -> list[tuple[float, float]]:
    """The catalogue as marsbench's evaluator reads it (its load_ground_truth)."""
    from marsbench.datasets.geo import load_ground_truth

    return [tuple(p) for p in load_ground_truth(path).tolist()]  # type: ignore[misc]


# ----------------------------------------------------------------------------- main


def _add_reference_evaluator_args(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--reference-repo", type=Path, required=required, help="The reference's checkout (its evaluators/)."
    )
    parser.add_argument(
        "--reference-python",
        type=Path,
        required=required,
        help="A Python with the reference's requirements (pandas, scipy, scikit-learn).",
    )
    parser.add_argument(
        "--ground-truth",
        type=Path,
        help="The catalogue CSV the reference used (default: the record's dataset_dir/ground_truth/).",
    )
    parser.add_argument(
        "--reference-radius-deg",
        type=float,
        default=REFERENCE_RADIUS_DEG,
        help="The reference's --radius_deg (its default 0.5).",
    )
    parser.add_argument(
        "--reference-eval-max-k",
        type=int,
        default=REFERENCE_EVAL_MAX_K,
        help="The reference's --eval_max_k (its default 20000).",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    prepare = commands.add_parser("prepare", help="Write a checkpoint and a geo dataset.")
    prepare.add_argument("--out", required=True, type=Path)
    prepare.add_argument("--arch", default="ViT-S-32", help="open_clip architecture (random init).")
    prepare.add_argument(
        "--seed", type=int, default=0, help="torch seed of the weights and synthesize()'s seed."
    )
    prepare.add_argument("--scale", default="small", choices=("small", "medium"), help="synthesize() scale.")
    prepare.add_argument(
        "--dataset", type=Path, help="An existing geo dataset/ folder: write only the checkpoint."
    )
    prepare.add_argument(
        "--edge-case",
        choices=sorted(EDGE_CASES),
        help="Also write a copy with one known source of divergence: "
        + "; ".join(f"{k}: {v}" for k, v in EDGE_CASES.items()),
    )
    prepare.set_defaults(func=cmd_prepare)

    compare = commands.add_parser("compare", help="Compare marsbench run records with reference runs.")
    compare.add_argument(
        "--records", required=True, type=Path, help="A run record, or the --out folder of `marsbench run`."
    )
    compare.add_argument(
        "--reference",
        required=True,
        type=Path,
        help="A folder with <landform>/<mode>/retrieval.log (the reference's --output_dir per run), "
        "or one such --output_dir when --records is one record.",
    )
    compare.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    _add_reference_evaluator_args(compare, required=False)
    compare.set_defaults(func=cmd_compare)

    diagnose = commands.add_parser(
        "diagnose", help="Find where one marsbench run and one reference run part."
    )
    diagnose.add_argument("--record", required=True, type=Path, help="A run record, or an --out folder.")
    diagnose.add_argument("--landform", help="Which record of an --out folder.")
    diagnose.add_argument("--mode", choices=MODES, help="Which record of an --out folder.")
    diagnose.add_argument("--data-dir", required=True, type=Path, help="The run's marsbench --data-dir.")
    diagnose.add_argument("--reference", required=True, type=Path, help="The reference run's --output_dir.")
    diagnose.add_argument(
        "--reference-db", required=True, type=Path, help="The reference's --db_dir (features.npy, ...)."
    )
    _add_reference_evaluator_args(diagnose, required=True)
    diagnose.set_defaults(func=cmd_diagnose)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "reference_python", None) is not None and getattr(args, "reference_repo", None) is None:
        raise SystemExit("--reference-python needs --reference-repo")
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

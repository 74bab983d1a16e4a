r"""Parity of `marsbench run landform` with the MarsRetrieval reference, on the same data and weights.

    python benchmarks/parity/landform_parity.py prepare --out /tmp/parity
    marsbench run landform --dataset-dir /tmp/parity/parquet/dataset --model open_clip:ViT-S-32 \
        --checkpoint /tmp/parity/ViT-S-32-seed0.pt --out /tmp/parity/runs/parquet --data-dir /tmp/parity/state
    (the reference's own main.py on the same dataset and checkpoint; see docs/parity.md)
    python benchmarks/parity/landform_parity.py compare --record /tmp/parity/runs/parquet \
        --reference-log /tmp/parity/reflogs/parquet/retrieval.log

`prepare` writes an open_clip training checkpoint of a randomly initialised architecture (fixed
torch seed) and one landform dataset in both published layouts: Hugging Face parquet shards
(`parquet/dataset/data/train-0000N-of-0000M.parquet`) and a folder per class
(`folders/dataset/<class>/<image_id>.png`), holding the same images. The images come from
`marsbench.datasets.synth.synthesize` when that exists, else (or with --procedural) from small
procedural textures, one texture family per class. `--procedural --edge-case CASE` adds one known
source of divergence (exact ties, truncated PNGs, duplicate ids, out-of-range labels).

`compare` reads a marsbench run record and the reference's log line `Evaluation summary: {...}`
(full-precision metrics with `per_class`), prints every mean and per-class metric side by side,
and exits 1 when any differs by more than the tolerance (default 1e-6) or the class sets differ.

`diagnose` explains a difference: image names, labels and embeddings (from the reference's
database folder), then each class's ranking as marsbench forms it against the reference's own
(from its `--save_details` output), and why and where they part.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import math
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

if TYPE_CHECKING:
    from marsbench.store import VectorStore

METRICS: tuple[str, ...] = ("mAP", "r_precision", "ndcg@10", "hit@10")
SUMMARY_MARKER = "Evaluation summary: "
DEFAULT_TOLERANCE = 1e-6
# Under numpy 2 the reference's log shows numpy scalars by their repr, `np.float64(0.25)`, which
# ast.literal_eval cannot read; the number inside is the full-precision value.
NUMPY_SCALAR = re.compile(r"\bnp\.(?:float|int|uint)\d+\(([^()]*)\)")


# ----------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class Sample:
    """One landform image: its class, its parquet id, and its encoded PNG bytes."""

    class_name: str
    image_id: str
    png: bytes
    # Written to the parquet `label` column instead of the class's index (for the bad-labels case).
    raw_label: int | None = None


Texture = Callable[[np.random.Generator, int, int], np.ndarray]


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    return ys / height, xs / width


def _craters(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    ys, xs = _grid(height, width)
    out = 0.5 + 0.05 * rng.standard_normal((height, width))
    for _ in range(int(rng.integers(3, 9))):
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.2)
        d = np.hypot(ys - cy, xs - cx) / r
        out += np.where(d < 1, -0.35 * (1 - d**2), 0) + 0.3 * np.exp(-(((d - 1) / 0.15) ** 2))
    return out


def _dunes(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    ys, xs = _grid(height, width)
    angle, freq = rng.uniform(0, math.pi), rng.uniform(6, 14)
    u = xs * math.cos(angle) + ys * math.sin(angle)
    phase = 0.08 * np.sin(2 * math.pi * rng.uniform(1, 3) * (ys - xs))
    wave = (u * freq + phase) % 1.0
    return 0.3 + 0.5 * wave**3 + 0.03 * rng.standard_normal((height, width))


def _layered(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    ys, xs = _grid(height, width)
    bands = np.sin(2 * math.pi * rng.uniform(10, 25) * (ys + 0.05 * np.sin(2 * math.pi * xs)))
    return 0.5 + 0.3 * np.sign(bands) * np.abs(bands) ** 0.3 + 0.02 * rng.standard_normal((height, width))


def _pitted_cones(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    ys, xs = _grid(height, width)
    out = np.full((height, width), 0.35) + 0.04 * rng.standard_normal((height, width))
    for _ in range(int(rng.integers(12, 30))):
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.02, 0.05)
        d = np.hypot(ys - cy, xs - cx) / r
        out += 0.5 * np.exp(-(d**2)) - 0.3 * np.exp(-((d / 0.35) ** 2))
    return out


def _slope_streaks(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    ys, xs = _grid(height, width)
    out = 0.6 + 0.1 * ys + 0.03 * rng.standard_normal((height, width))
    for _ in range(int(rng.integers(4, 10))):
        x0, slope, w = rng.uniform(0, 1), rng.uniform(-0.3, 0.3), rng.uniform(0.005, 0.02)
        top = rng.uniform(0, 0.4)
        line = np.abs(xs - (x0 + slope * ys)) < w
        out -= 0.4 * (line & (ys > top))
    return out


def _channels(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    ys, xs = _grid(height, width)
    out = 0.55 + 0.05 * rng.standard_normal((height, width))
    for _ in range(int(rng.integers(1, 3))):
        amp, freq, x0 = rng.uniform(0.05, 0.2), rng.uniform(1, 4), rng.uniform(0.2, 0.8)
        center = x0 + amp * np.sin(2 * math.pi * freq * ys + rng.uniform(0, 2 * math.pi))
        out -= 0.45 * np.exp(-(((xs - center) / rng.uniform(0.02, 0.05)) ** 2))
    return out


def _smooth_plains(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    noise = rng.standard_normal((height // 8 + 2, width // 8 + 2))
    coarse = np.kron(noise, np.ones((8, 8)))[:height, :width]
    _, xs = _grid(height, width)
    return 0.5 + 0.08 * coarse + 0.2 * (xs - 0.5) * rng.uniform(-1, 1)


# Names mix underscores and hyphens so that the class-name-to-phrase rule is exercised too.
TEXTURES: dict[str, Texture] = {
    "craters": _craters,
    "dunes": _dunes,
    "layered_deposits": _layered,
    "pitted_cones": _pitted_cones,
    "slope_streaks": _slope_streaks,
    "channel-systems": _channels,
    "smooth-plains": _smooth_plains,
}


def _png(gray: np.ndarray, rng: np.random.Generator, *, grayscale: bool) -> bytes:
    values = np.clip(gray, 0.0, 1.0)
    if grayscale:
        image = Image.fromarray((values * 255).astype(np.uint8), mode="L")
    else:
        tint = np.array([1.0, 0.72, 0.55]) * rng.uniform(0.85, 1.15, size=3)
        rgb = np.clip(values[..., None] * tint, 0.0, 1.0)
        image = Image.fromarray((rgb * 255).astype(np.uint8), mode="RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def procedural_samples(per_class: int, seed: int, size: int) -> list[Sample]:
    """`per_class` images for each texture class; some non-square, some grayscale.

    Image ids are numbered in a shuffled order, so that name order is unrelated to class order.
    """
    rng = np.random.default_rng(seed)
    drawn: list[tuple[str, bytes]] = []
    for class_name, texture in TEXTURES.items():
        for i in range(per_class):
            height = size
            width = size if i % 3 else int(size * rng.uniform(0.7, 1.5))
            drawn.append((class_name, _png(texture(rng, height, width), rng, grayscale=i % 5 == 4)))
    order = rng.permutation(len(drawn))
    return [
        Sample(class_name=drawn[j][0], image_id=f"lf_{rank:05d}", png=drawn[j][1])
        for rank, j in enumerate(order.tolist())
    ]


# Each edge case is a known source of divergence from the reference (docs/parity.md); `prepare`
# adds one to the clean data so that its effect can be measured alone.
EDGE_CASES: dict[str, str] = {
    "ties": "byte-identical copies of 3 images under new ids, labelled with another class (exact ties)",
    "truncated": "2 PNGs cut to 70% of their bytes (the reference loads them with LOAD_TRUNCATED_IMAGES)",
    "duplicates": "2 extra parquet rows reusing existing image ids with other images and classes",
    "bad-labels": "2 extra parquet rows with labels 99 and -1, outside the ClassLabel names",
}
PARQUET_ONLY_CASES = frozenset({"duplicates", "bad-labels"})


def with_edge_case(samples: list[Sample], case: str, classes: Sequence[str], seed: int) -> list[Sample]:
    """`samples` plus (or with) the rows of one edge case; deterministic for a seed."""
    rng = np.random.default_rng(seed + 1)
    picks = [samples[i] for i in rng.choice(len(samples), size=3, replace=False).tolist()]
    next_id = len(samples)
    out = list(samples)
    if case == "ties":
        for k, s in enumerate(picks):
            other = classes[(classes.index(s.class_name) + 1) % len(classes)]
            out.append(Sample(class_name=other, image_id=f"lf_{next_id + k:05d}", png=s.png))
    elif case == "truncated":
        for s in picks[:2]:
            out[out.index(s)] = Sample(s.class_name, s.image_id, s.png[: int(len(s.png) * 0.7)])
    elif case == "duplicates":
        donors = [samples[i] for i in rng.choice(len(samples), size=2, replace=False).tolist()]
        for s, donor in zip(picks[:2], donors, strict=True):
            other = classes[(classes.index(s.class_name) + 3) % len(classes)]
            out.append(Sample(class_name=other, image_id=s.image_id, png=donor.png))
    elif case == "bad-labels":
        for k, (s, label) in enumerate(zip(picks[:2], (99, -1), strict=True)):
            out.append(Sample(s.class_name, f"lf_{next_id + k:05d}", s.png, raw_label=label))
    else:
        raise ValueError(f"unknown edge case {case!r}")
    return out


# ----------------------------------------------------------------------------- layouts

HF_FEATURES_TEMPLATE: dict[str, object] = {
    "image": {"_type": "Image"},
    "label": {"names": [], "_type": "ClassLabel"},
    "image_id": {"dtype": "string", "_type": "Value"},
}


def write_parquet_layout(samples: Sequence[Sample], classes: Sequence[str], root: Path, shards: int) -> None:
    """`root/data/train-0000N-of-0000M.parquet` with Hugging Face's Image/ClassLabel metadata."""
    features = json.loads(json.dumps(HF_FEATURES_TEMPLATE))
    features["label"]["names"] = list(classes)
    metadata = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    schema = pa.schema(
        [
            pa.field("image", pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])),
            pa.field("label", pa.int64()),
            pa.field("image_id", pa.string()),
        ],
        metadata=metadata,
    )
    data_dir = root / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    index = {name: i for i, name in enumerate(classes)}
    for shard, part in enumerate(np.array_split(np.arange(len(samples)), shards)):
        rows = [samples[i] for i in part.tolist()]
        table = pa.table(
            {
                "image": [{"bytes": s.png, "path": f"{s.image_id}.png"} for s in rows],
                "label": [index[s.class_name] if s.raw_label is None else s.raw_label for s in rows],
                "image_id": [s.image_id for s in rows],
            },
            schema=schema,
        )
        pq.write_table(table, data_dir / f"train-{shard:05d}-of-{shards:05d}.parquet")


def write_folder_layout(samples: Sequence[Sample], root: Path) -> None:
    """`root/<class>/<image_id>.png`; the image name becomes `<class>/<image_id>.png`."""
    for sample in samples:
        folder = root / sample.class_name
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{sample.image_id}.png"
        if target.exists():
            raise SystemExit(f"duplicate image {target}: the folder layout cannot hold both")
        target.write_bytes(sample.png)


def samples_from_parquet(root: Path) -> tuple[list[Sample], list[str]]:
    """The usable rows of a parquet landform dataset (rows with bytes, an id and a class label)."""
    shards = sorted((root / "data").glob("*.parquet")) or sorted(root.glob("*.parquet"))
    if not shards:
        raise SystemExit(f"no parquet shards in {root} or {root / 'data'}")
    meta = pq.read_schema(shards[0]).metadata or {}
    info = json.loads(meta.get(b"huggingface", b"{}"))
    names = info.get("info", {}).get("features", {}).get("label", {}).get("names")
    if not names:
        raise SystemExit(f"{shards[0]} has no ClassLabel names in its Hugging Face metadata")
    samples: list[Sample] = []
    for shard in shards:
        for row in pq.read_table(shard).to_pylist():
            image = row.get("image") or {}
            data = image.get("bytes") if isinstance(image, dict) else image
            label, image_id = row.get("label"), row.get("image_id") or row.get("id")
            if data and image_id and isinstance(label, int) and 0 <= label < len(names):
                samples.append(Sample(class_name=names[label], image_id=str(image_id), png=bytes(data)))
    return samples, list(names)


def _synthesized_parquet(scratch: Path, seed: int) -> Path | None:
    """The landform dataset that `marsbench.datasets.synth.synthesize` writes, when it exists."""
    try:
        from marsbench.datasets.synth import synthesize
    except ImportError:
        return None
    try:
        synthesize(scratch, scale="small", seed=seed, tasks=("landform",))
    except TypeError:  # an early signature without `tasks`: it writes every task
        synthesize(scratch, scale="small", seed=seed)
    candidates = sorted(
        {
            p.parent.parent
            for p in scratch.rglob("data/*.parquet")
            if "landform" in str(p.relative_to(scratch))
        }
    )
    if not candidates:
        raise SystemExit(f"synthesize() wrote no landform parquet dataset under {scratch}")
    return candidates[0]


# ----------------------------------------------------------------------------- checkpoint


def write_checkpoint(arch: str, seed: int, path: Path) -> None:
    """open_clip's training checkpoint format: {"epoch", "state_dict": {"module." + key: tensor}}."""
    import open_clip
    import torch

    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None, device="cpu")
    state = {f"module.{key}": value.detach().clone() for key, value in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 1, "state_dict": state}, path)


# ----------------------------------------------------------------------------- prepare


def cmd_prepare(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / f"{args.arch}-seed{args.seed}.pt"
    write_checkpoint(args.arch, args.seed, checkpoint)
    print(f"checkpoint  {checkpoint}")
    if args.dataset is not None:
        print(f"dataset     {args.dataset} (given; nothing written)")
        return 0
    if args.edge_case is not None and not args.procedural:
        raise SystemExit("--edge-case applies to the procedural data: add --procedural")
    parquet_root, folder_root = out / "parquet" / "dataset", out / "folders" / "dataset"
    for root in (parquet_root, folder_root):
        if root.exists():
            shutil.rmtree(root)
    with tempfile.TemporaryDirectory(prefix="landform-parity-") as scratch:
        synthesized = None if args.procedural else _synthesized_parquet(Path(scratch), args.seed)
        if synthesized is not None:
            shutil.copytree(synthesized, parquet_root)
            samples, classes = samples_from_parquet(parquet_root)
            source = f"marsbench.datasets.synth.synthesize (seed {args.seed})"
        else:
            samples = procedural_samples(args.per_class, args.seed, args.image_size)
            classes = sorted(TEXTURES)
            source = f"procedural textures ({len(TEXTURES)} classes x {args.per_class}, seed {args.seed})"
            if args.edge_case is not None:
                samples = with_edge_case(samples, args.edge_case, classes, args.seed)
                source += f", edge case {args.edge_case}: {EDGE_CASES[args.edge_case]}"
            write_parquet_layout(samples, classes, parquet_root, args.shards)
    print(f"images      {len(samples)} from {source}")
    print(f"parquet     {parquet_root}")
    if args.edge_case in PARQUET_ONLY_CASES:
        print(f"folders     none (the folder layout cannot express {args.edge_case})")
    else:
        write_folder_layout(samples, folder_root)
        print(f"folders     {folder_root}")
    return 0


# ----------------------------------------------------------------------------- compare


def load_record(path: Path) -> dict[str, object]:
    """A run record file, or the newest `landform-*.json` in a folder."""
    if path.is_dir():
        records = sorted(path.glob("landform-*.json"), key=lambda p: p.stat().st_mtime)
        if not records:
            raise SystemExit(f"no landform-*.json run record in {path}")
        path = records[-1]
    record: dict[str, object] = json.loads(path.read_text())
    return record


def reference_summary(path: Path) -> dict[str, object]:
    """The last `Evaluation summary: {...}` dict in a reference log (a file, or found under a folder)."""
    logs = sorted(path.rglob("retrieval.log"), key=lambda p: p.stat().st_mtime) if path.is_dir() else [path]
    if not logs:
        raise SystemExit(f"no retrieval.log under {path}")
    lines = [line for line in logs[-1].read_text().splitlines() if SUMMARY_MARKER in line and "{" in line]
    if not lines:
        raise SystemExit(f"no '{SUMMARY_MARKER.strip()}' line in {logs[-1]}")
    text = NUMPY_SCALAR.sub(r"\1", lines[-1].split(SUMMARY_MARKER, 1)[1].strip())
    summary = ast.literal_eval(text)
    if not isinstance(summary, dict):
        raise SystemExit(f"the evaluation summary in {logs[-1]} is not a dict")
    return summary


@dataclass(frozen=True)
class Row:
    scope: str  # "mean" or a class name
    metric: str
    ours: float | None
    reference: float | None

    @property
    def diff(self) -> float:
        if self.ours is None or self.reference is None:
            return math.inf
        return abs(self.ours - self.reference)


def _float_or_none(table: Mapping[str, object], key: str) -> float | None:
    value = table.get(key)
    return float(value) if isinstance(value, int | float) else None


def comparison_rows(record: Mapping[str, object], summary: Mapping[str, object]) -> Iterator[Row]:
    ours_means = record.get("metrics") or {}
    ours_classes = record.get("per_class") or {}
    ref_classes = summary.get("per_class") or {}
    assert isinstance(ours_means, dict) and isinstance(ours_classes, dict) and isinstance(ref_classes, dict)
    for metric in METRICS:
        yield Row("mean", metric, _float_or_none(ours_means, metric), _float_or_none(summary, metric))
    for name in sorted(set(ours_classes) | set(ref_classes)):
        ours, ref = ours_classes.get(name, {}), ref_classes.get(name, {})
        for metric in METRICS:
            yield Row(name, metric, _float_or_none(ours, metric), _float_or_none(ref, metric))


def _cell(value: float | None) -> str:
    return "missing" if value is None else f"{value:.9f}"


def render(rows: Sequence[Row], tolerance: float) -> str:
    width = max([len("class"), *(len(r.scope) for r in rows)])
    lines = [f"{'class':<{width}}  {'metric':<11}  {'marsbench':>12}  {'reference':>12}  {'abs diff':>9}"]
    for row in rows:
        flag = "" if row.diff <= tolerance else "  <-- differs"
        diff = "inf" if math.isinf(row.diff) else f"{row.diff:.2e}"
        lines.append(
            f"{row.scope:<{width}}  {row.metric:<11}  {_cell(row.ours):>12}  {_cell(row.reference):>12}"
            f"  {diff:>9}{flag}"
        )
    return "\n".join(lines)


def cmd_compare(args: argparse.Namespace) -> int:
    record = load_record(args.record)
    summary = reference_summary(args.reference_log)
    rows = list(comparison_rows(record, summary))
    print(render(rows, args.tolerance))
    means = [r.diff for r in rows if r.scope == "mean"]
    per_class = [r.diff for r in rows if r.scope != "mean"]
    n_classes = len({r.scope for r in rows if r.scope != "mean"})
    print(
        f"\nmax abs diff: means {max(means):.3e}, per class {max(per_class, default=0.0):.3e} "
        f"({n_classes} classes); tolerance {args.tolerance:g}"
    )
    failing = [r for r in rows if r.diff > args.tolerance]
    if failing:
        print(f"PARITY FAILED: {len(failing)} value(s) differ by more than {args.tolerance:g}")
        return 1
    print("PARITY OK")
    return 0


# ----------------------------------------------------------------------------- diagnose


def _reference_database(db_dir: Path) -> tuple[np.ndarray, list[str], list[str]]:
    """features.npy, metadata.pkl (image names) and labels.pkl (class names) of a reference run.

    They are pickles the reference wrote on this machine; only load ones you produced yourself.
    """
    import pickle

    features = np.load(db_dir / "features.npy")
    with (db_dir / "metadata.pkl").open("rb") as f:
        names = [str(n) for n in pickle.load(f)]
    with (db_dir / "labels.pkl").open("rb") as f:
        labels = [str(label) for label in pickle.load(f)]
    return features.astype(np.float32), names, labels


def _reference_rankings(details: Path) -> dict[str, list[tuple[str, float]]]:
    """The reference's own ranking per class, from `--save_details` (landform_details/<ts>/*.csv).

    Each CSV is sorted with the same pandas call as the reference's evaluator on the same rows,
    so its order is the order the reference scored (ties included).
    """
    import csv

    rankings: dict[str, list[tuple[str, float]]] = {}
    for path in sorted(details.glob("*.csv")):
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if rows:
            rankings[rows[0]["query_name"]] = [(r["image_name"], float(r["similarity"])) for r in rows]
    return rankings


@dataclass(frozen=True)
class StoredImage:
    name: str
    label: str
    vector: np.ndarray


def _stored_images(store: VectorStore, collection: str) -> dict[str, StoredImage]:
    """Point id -> the image marsbench indexed (name, class, embedding)."""
    return {
        point.id: StoredImage(str(point.payload["name"]), str(point.payload["label"]), point.vectors["image"])
        for point in store.scroll(collection, with_vectors=True)
    }


def _our_rankings(
    record: Mapping[str, object], store: VectorStore, classes: Sequence[str], names_by_id: Mapping[str, str]
) -> dict[str, list[tuple[str, float]]]:
    """Rankings exactly as the evaluator forms them: the encoder's model, the store's scores, the tie rule."""
    from marsbench.encoder.adapters.base import RuntimeOptions
    from marsbench.encoder.adapters.open_clip import OpenClipModel
    from marsbench.encoder.registry import resolve_model
    from marsbench.evaluator.metrics.ranking import rank_order
    from marsbench.tasks.landform import PROMPT_TEMPLATES, SCORE_DECIMALS, class_prompts, ensemble_query

    model = OpenClipModel.load(resolve_model(str(record["model"])), RuntimeOptions(device="cpu"))
    prompts = [p for name in classes for p in class_prompts(name)]
    vectors = model.embed_texts(prompts).reshape(len(classes), len(PROMPT_TEMPLATES), -1)
    queries = np.stack([ensemble_query(group) for group in vectors])
    results = store.search_batch(
        str(record["collection"]),
        queries,
        using="image",
        limit=len(names_by_id),
        exact=True,
        with_payload=False,
    )
    rankings = {}
    for name, hits in zip(classes, results, strict=True):
        hit_names = [names_by_id[h.id] for h in hits]
        scores = np.array([h.score for h in hits], dtype=np.float64)
        order = rank_order(hit_names, scores, decimals=SCORE_DECIMALS)
        rankings[name] = [(hit_names[i], round(float(scores[i]), SCORE_DECIMALS)) for i in order.tolist()]
    return rankings


def _tie_groups(ranking: Sequence[tuple[str, float]]) -> list[list[str]]:
    groups: dict[float, list[str]] = {}
    for name, score in ranking:
        groups.setdefault(score, []).append(name)
    return [g for g in groups.values() if len(g) > 1]


def _ranking_verdict(
    name: str, ours: Sequence[tuple[str, float]], theirs: Sequence[tuple[str, float]]
) -> str:
    """One class's rankings compared: score agreement, ties, and why the orders part (if they do)."""
    counts_a, counts_b = Counter(n for n, _ in ours), Counter(n for n, _ in theirs)
    score_a, score_b = dict(ours), dict(theirs)
    unique = [n for n in score_a if counts_a[n] == 1 and counts_b.get(n) == 1]
    score_diff = max((abs(score_a[n] - score_b[n]) for n in unique), default=0.0)
    line = (
        f"{name}: max |score diff| {score_diff:.1e} over {len(unique)} images named once on both sides "
        f"(scores rounded to 6 decimals), {len(_tie_groups(theirs))} tied group(s) in the reference, "
    )
    first = next((i for i, (x, y) in enumerate(zip(ours, theirs, strict=False)) if x[0] != y[0]), None)
    if first is None:
        return line + ("same order" if len(ours) == len(theirs) else "one ranking is a prefix of the other")
    mine, ref = ours[first], theirs[first]
    if ref[0] not in counts_a:
        why = f"the reference ranks {ref[0]}, which marsbench did not index"
    elif mine[0] not in counts_b:
        why = f"marsbench ranks {mine[0]}, which the reference did not index"
    elif counts_b[ref[0]] > 1 or counts_b[mine[0]] > 1:
        why = "a name the reference holds more than once"
    elif mine[1] == ref[1]:
        why = "inside a tie: equal rounded scores; ordered by name here, in faiss order by the reference"
    else:
        why = "different scores"
    rows = [line + f"orders part at rank {first + 1}: {why}"]
    for i in range(max(0, first - 1), min(len(ours), len(theirs), first + 3)):
        (a, sa), (b, sb) = ours[i], theirs[i]
        rows.append(f"    rank {i + 1}: marsbench {a} {sa:.6f} | reference {b} {sb:.6f}")
    return "\n".join(rows)


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Where two runs part: image sets, labels, embeddings, scores and rankings, side by side."""
    from marsbench.store import open_store

    record = load_record(args.record)
    store = open_store(qdrant_url=None, data_dir=args.data_dir)
    try:
        return _diagnose(record, store, args.reference_db, args.reference_details)
    finally:
        store.close()


def _diagnose(
    record: Mapping[str, object], store: VectorStore, reference_db: Path, reference_details: Path | None
) -> int:
    ref_features, ref_names, ref_labels = _reference_database(reference_db)
    stored = _stored_images(store, str(record["collection"]))
    ours = {image.name: image for image in stored.values()}
    repeats = Counter(ref_names)
    problems = 0
    print(f"images: marsbench {len(ours)}, reference {len(ref_names)} ({len(repeats)} distinct names)")
    for label, names in (
        ("only in marsbench", sorted(set(ours) - set(ref_names))),
        ("only in reference", sorted(set(ref_names) - set(ours))),
        ("repeated in reference", sorted(n for n, k in repeats.items() if k > 1)),
    ):
        if names:
            problems += 1
            print(f"  {label}: {len(names)}: {', '.join(names[:10])}")
    ref_classes, our_classes = sorted(set(ref_labels)), sorted({image.label for image in ours.values()})
    if ref_classes != our_classes:
        problems += 1
        print(f"  classes differ: marsbench {our_classes}, reference {ref_classes}")
    mismatched = [
        (n, ours[n].label, lab)
        for n, lab in zip(ref_names, ref_labels, strict=True)
        if n in ours and ours[n].label != lab
    ]
    for name, mine, theirs in mismatched[:10]:
        print(f"  label of {name}: marsbench {mine!r}, reference {theirs!r}")
    problems += bool(mismatched)
    common = [i for i, n in enumerate(ref_names) if n in ours and repeats[n] == 1]
    if common:
        delta = np.abs(np.stack([ours[ref_names[i]].vector for i in common]) - ref_features[common])
        identical = int(np.sum(np.all(delta == 0, axis=1)))
        print(
            f"embeddings of {len(common)} shared images: max |diff| {delta.max():.3e}, "
            f"{identical} bit-identical"
        )
    if reference_details is None:
        print("no --reference-details: rankings not compared (run the reference with --save_details)")
        return 1 if problems else 0
    theirs = _reference_rankings(reference_details)
    names_by_id = {point_id: image.name for point_id, image in stored.items()}
    mine_rankings = _our_rankings(record, store, sorted(set(theirs) & set(our_classes)), names_by_id)
    for name in sorted(set(theirs) | set(mine_rankings)):
        a, b = mine_rankings.get(name), theirs.get(name)
        if a is None or b is None:
            problems += 1
            print(f"{name}: ranked only by {'the reference' if a is None else 'marsbench'}")
            continue
        print(_ranking_verdict(name, a, b))
        problems += [n for n, _ in a] != [n for n, _ in b]
    return 1 if problems else 0


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    prepare = commands.add_parser("prepare", help="Write a checkpoint and the dataset in both layouts.")
    prepare.add_argument("--out", required=True, type=Path)
    prepare.add_argument("--arch", default="ViT-S-32", help="open_clip architecture (random init).")
    prepare.add_argument(
        "--seed", type=int, default=0, help="torch seed of the weights and the images' seed."
    )
    prepare.add_argument(
        "--dataset", type=Path, help="An existing landform dataset: write only the checkpoint."
    )
    prepare.add_argument(
        "--procedural", action="store_true", help="Use the built-in textures even if synthesize() exists."
    )
    prepare.add_argument("--per-class", type=int, default=20, help="Procedural images per class.")
    prepare.add_argument("--image-size", type=int, default=64, help="Procedural image height in pixels.")
    prepare.add_argument("--shards", type=int, default=2, help="Parquet shards for the procedural data.")
    prepare.add_argument(
        "--edge-case",
        choices=sorted(EDGE_CASES),
        help="Add one known source of divergence to the procedural data: "
        + "; ".join(f"{k}: {v}" for k, v in EDGE_CASES.items()).replace("%", "%%"),
    )
    prepare.set_defaults(func=cmd_prepare)

    compare = commands.add_parser("compare", help="Compare a marsbench run record with a reference log.")
    compare.add_argument("--record", required=True, type=Path, help="Run record JSON, or its --out folder.")
    compare.add_argument(
        "--reference-log",
        required=True,
        type=Path,
        help="The reference's retrieval.log, or a folder above it.",
    )
    compare.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    compare.set_defaults(func=cmd_compare)

    diagnose = commands.add_parser("diagnose", help="Find where a marsbench run and a reference run part.")
    diagnose.add_argument("--record", required=True, type=Path, help="Run record JSON, or its --out folder.")
    diagnose.add_argument("--data-dir", required=True, type=Path, help="The run's marsbench --data-dir.")
    diagnose.add_argument(
        "--reference-db",
        required=True,
        type=Path,
        help="The reference's database folder (features.npy, ...).",
    )
    diagnose.add_argument(
        "--reference-details", type=Path, help="The reference's landform_details/<timestamp> folder."
    )
    diagnose.set_defaults(func=cmd_diagnose)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

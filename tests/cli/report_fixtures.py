"""Fixture data for `marsbench report` (tests/cli/test_report.py): a results tree with records of
all three tasks, built in code.

Two models per task, records nested in subfolders as `marsbench run/benchmark` and the evaluator
leave them, and the awkward cases: a forced run, an older record superseded by a newer one, a
version-1 record without curves, a corrupt record, a record that fails validation, JSON and CSV
files that are not records, and a geo map artifact (a small PNG) beside its record.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from marsbench.schemas.jobs import TaskName
from marsbench.schemas.runs import Curve, QueryMode, RunRecord
from marsbench.tasks.geo import DEFAULT_RADIUS_DEG, DEFAULT_TOP_K

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
CLIP = "clip"
MARSCOPE = "marscope@/ckpt/dir/marscope.pt"  # shown as marscope@marscope.pt, as the benchmark names it
KS = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]


def _paired_metrics(r1: float, r10: float, medr: float, mrr: float) -> dict[str, float]:
    return {
        f"{direction}_{name}": value
        for direction, scale in (("i2t", 1.0), ("t2i", 0.9))
        for name, value in (("r1", r1 * scale), ("r10", r10 * scale), ("medr", medr), ("mrr", mrr * scale))
    }


def _recall_curve(r1: float) -> Curve:
    recall = [min(1.0, r1 * (1 + i) ** 1.2) for i in range(len(KS))]
    return Curve(x_label="k", x=KS, y={"recall": recall})


def _pr_curve(scale: float) -> Curve:
    ks = [1.0, 10.0, 100.0, 1000.0, 5000.0]
    return Curve(
        x_label="k",
        x=ks,
        y={
            "precision": [scale * p for p in (0.9, 0.6, 0.3, 0.1, 0.04)],
            "recall": [0.02, 0.1, 0.4, 0.8, 1.0],
        },
    )


def _record(
    task: TaskName, model: str, run_id: str, metrics: dict[str, float], **fields: object
) -> RunRecord:
    base: dict[str, object] = {
        "version": 2,  # with curves and `forced`
        "id": run_id,
        "task": task,
        "model": model,
        "dataset_dir": f"/data/{task.value}/dataset",
        "collection": f"{task.value}-{run_id}",
        "variant": "parity",
        "metrics": metrics,
        "variants": {"parity": metrics},
        "created_at": NOW,
        "duration_s": 1.5,
    }
    return RunRecord.model_validate(base | fields)


def _geo_metrics(f1: float, auprc: float) -> dict[str, float]:
    return {"f1": f1, "precision": f1 * 1.2, "recall": f1 * 0.8, "k": 40.0, "auprc": auprc}


def png_bytes(width: int = 240, height: int = 160) -> bytes:
    """A small map-like PNG; noise, so it is not compressed to nothing."""
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class Results:
    root: Path
    corrupt: Path  # truncated JSON that looks like a record
    invalid: Path  # valid JSON, a record's keys, an unknown task
    forced_id: str
    superseded_id: str


def write_results(root: Path) -> Results:
    """The results tree the report tests read."""
    bench, runs, demo = root / "bench", root / "evaluator" / "runs", root / "demo-runs"
    for folder in (bench, runs, demo):
        folder.mkdir(parents=True)

    def save(folder: Path, record: RunRecord | dict[str, object], name: str | None = None) -> None:
        data = record.model_dump_json(indent=2) if isinstance(record, RunRecord) else json.dumps(record)
        run_id = record.id if isinstance(record, RunRecord) else str(record["id"])
        (folder / (name or f"{run_id}.json")).write_text(data)

    # -- paired: clip (newest, and an older superseded run), marscope -----------------------------
    ties = {
        "ties_optimistic": _paired_metrics(0.13, 0.51, 11.0, 0.21),
        "ties_pessimistic": _paired_metrics(0.12, 0.49, 13.0, 0.19),
    }
    clip_paired = _paired_metrics(0.1234, 0.5, 12.0, 0.2)
    save(bench, _record(
        TaskName.PAIRED, CLIP, "paired-clip-new", clip_paired, caption_key="refined_caption",
        variants={"parity": clip_paired, **ties},
        curves={"i2t_recall_at_k": _recall_curve(0.1234), "t2i_recall_at_k": _recall_curve(0.11)},
    ))  # fmt: skip
    old = _paired_metrics(0.9999, 0.9999, 1.0, 0.9999)
    save(demo, _record(
        TaskName.PAIRED, CLIP, "paired-clip-old", old, caption_key="refined_caption",
        created_at=NOW - timedelta(days=2),
    ))  # fmt: skip
    marscope_paired = _paired_metrics(0.2345, 0.6789, 5.0, 0.3)
    save(bench, _record(
        TaskName.PAIRED, MARSCOPE, "paired-marscope", marscope_paired, caption_key="refined_caption",
        variants={"parity": marscope_paired, **ties},
        curves={"i2t_recall_at_k": _recall_curve(0.2345), "t2i_recall_at_k": _recall_curve(0.2)},
    ))  # fmt: skip
    (bench / "paired-marscope.top10.json").write_text(json.dumps({"q0": ["a", "b"]}))

    # -- landform: per-class APs ------------------------------------------------------------------
    classes = ["crater", "dune", "gully", "yardang", "channel"]
    for model, run_id, scale in ((CLIP, "landform-clip", 0.5), (MARSCOPE, "landform-marscope", 0.8)):
        per_class = {
            name: {"mAP": scale * (0.6 + 0.08 * i), "r_precision": 0.5, "ndcg@10": 0.6, "hit@10": 0.9}
            for i, name in enumerate(classes)
        }
        mean_ap = sum(values["mAP"] for values in per_class.values()) / len(classes)
        metrics = {"mAP": mean_ap, "r_precision": 0.5 * scale, "ndcg@10": 0.6, "hit@10": 0.9}
        save(runs, _record(TaskName.LANDFORM, model, run_id, metrics, per_class=per_class))

    # -- geo: clip on two landforms x two modes; marscope forced / version 1 -----------------------
    geo_fields = {"settings": {"top_k": DEFAULT_TOP_K, "radius_deg": DEFAULT_RADIUS_DEG}}
    for i, (landform, mode) in enumerate(
        (lf, m) for lf in ("yardangs", "landslides") for m in (QueryMode.TEXT, QueryMode.IMAGE)
    ):
        metrics = _geo_metrics(0.1 + 0.01 * i, 0.05 + 0.01 * i)
        variants = {
            "parity": metrics,
            "exact": _geo_metrics(0.2, 0.06),
            "exact_great_circle": _geo_metrics(0.21, 0.07),
        }
        run_id = f"geo-clip-{landform}-{mode}"
        artifacts = {}
        if (landform, mode) == ("yardangs", QueryMode.TEXT):
            artifacts = {"map": f"{run_id}.map.png"}
            (bench / artifacts["map"]).write_bytes(png_bytes())
        elif (landform, mode) == ("landslides", QueryMode.TEXT):
            artifacts = {"map": f"{run_id}.map.png"}  # named, never written: reported, not fatal
        save(bench, _record(
            TaskName.GEOLOCALIZATION, CLIP, run_id, metrics, landform=landform, query_mode=mode,
            variants=variants, artifacts=artifacts, curves={"pr": _pr_curve(1.0)}, **geo_fields,
        ))  # fmt: skip
    forced_id = "geo-marscope-yardangs-text"
    forced_metrics = _geo_metrics(0.3456, 0.2)
    save(runs, _record(
        TaskName.GEOLOCALIZATION, MARSCOPE, forced_id, forced_metrics, landform="yardangs",
        query_mode=QueryMode.TEXT, variants={"parity": forced_metrics, "exact": _geo_metrics(0.3, 0.2)},
        curves={"pr": _pr_curve(1.1)}, forced=True, indexing={"job": "j1", "state": "running"},
        **geo_fields,
    ))  # fmt: skip
    # Version 1: written before records kept curves or `forced`.
    v1_metrics = _geo_metrics(0.05, 0.01)
    save(runs, {
        "version": 1, "id": "geo-marscope-yardangs-image", "task": "geolocalization", "model": MARSCOPE,
        "dataset_dir": "/data/geolocalization/dataset", "collection": "c", "landform": "yardangs",
        "query_mode": "image", "variant": "parity", "metrics": v1_metrics,
        "variants": {"parity": v1_metrics}, "artifacts": {}, "per_class": {}, "chance": {},
        "settings": {"top_k": 20_000, "radius_deg": 0.5}, "counts": {}, "notes": [],
        "created_at": (NOW - timedelta(days=30)).isoformat(), "duration_s": 3.0,
    })  # fmt: skip

    # -- not records ------------------------------------------------------------------------------
    corrupt = runs / "landform-broken.json"
    corrupt.write_text('{"task": "landform", "model": "x", "metrics": {"mAP": 0.5')
    invalid = runs / "paired-invalid.json"
    invalid.write_text(json.dumps({"task": "captioning", "model": "x", "metrics": {"r1": 0.5}}))
    (root / "notes.json").write_text(json.dumps({"comment": "not a record"}))
    (root / "list.json").write_text("[1, 2, 3]")
    (bench / "leaderboard-paired.csv").write_text("model,caption_key\nclip,refined_caption\n")
    (bench / ".geo-clip.json.123.tmp").write_text("{half")
    return Results(root, corrupt, invalid, forced_id, "paired-clip-old")


# -- two datasets, baselines, AUPRC 0 ---------------------------------------------------------------

FP_A, FP_B = "aaaa1111bbbb2222", "cccc3333dddd4444"


def provenance(dataset_dir: str, fingerprint: str) -> dict[str, object]:
    """The least provenance block a record validates with: what the report reads is the fingerprint."""
    return {
        "model": {"reference": CLIP},
        "dataset": {"path": dataset_dir, "fingerprint": fingerprint},
        "software": {"python": "3.11.9", "marsbench": "0.0.0"},
        "hardware": {"evaluator": {"platform": "linux", "machine": "x86_64"}},
        "timings": {"total_s": 1.0},
    }


def write_two_datasets(root: Path) -> Path:
    """The same model and caption key on two paired datasets (240 and 4 pairs), landform records with
    class sizes (exact baseline) and one without (chance), and geo runs whose AUPRC is 0 at recall 1."""
    root.mkdir(parents=True, exist_ok=True)

    def save(record: RunRecord) -> None:
        (root / f"{record.id}.json").write_text(record.model_dump_json(indent=2))

    for run_id, folder, fingerprint, pairs, r1 in (
        ("paired-a", "/data/mars-a/dataset", FP_A, 240, 0.25),
        ("paired-b", "/data/mars-b/dataset", FP_B, 4, 0.5),
    ):
        metrics = _paired_metrics(r1, 0.8, 3.0, 0.4)
        save(_record(
            TaskName.PAIRED, CLIP, run_id, metrics, caption_key="refined_caption", dataset_dir=folder,
            provenance=provenance(folder, fingerprint), counts={"pairs": pairs},
        ))  # fmt: skip
    # Landform: 4 images, classes of 2 and 1 (exact: AP 49/72 and H_4/4 = 25/48).
    per_class = {
        "crater": {"mAP": 1.0, "r_precision": 1.0, "ndcg@10": 1.0, "hit@10": 1.0, "n_relevant": 2.0},
        "dune": {"mAP": 0.5, "r_precision": 0.0, "ndcg@10": 0.63, "hit@10": 1.0, "n_relevant": 1.0},
    }
    metrics = {"mAP": 0.75, "r_precision": 0.5, "ndcg@10": 0.8, "hit@10": 1.0}
    save(_record(
        TaskName.LANDFORM, CLIP, "landform-exact", metrics, dataset_dir="/data/lf-small/dataset",
        provenance=provenance("/data/lf-small/dataset", FP_A), per_class=per_class,
        counts={"images": 4, "classes": 2},
        chance={"mAP": 0.9, "r_precision": 0.9, "ndcg@10": 0.9, "hit@10": 0.9},  # unused: exact wins
    ))  # fmt: skip
    sizeless = {name: {k: v for k, v in row.items() if k != "n_relevant"} for name, row in per_class.items()}
    save(_record(
        TaskName.LANDFORM, CLIP, "landform-chance", metrics, dataset_dir="/data/lf-old/dataset",
        per_class=sizeless,
        counts={"images": 50, "classes": 2},
        chance={"mAP": 0.1234, "r_precision": 0.1, "ndcg@10": 0.2, "hit@10": 0.3},
    ))  # fmt: skip
    save(_record(
        TaskName.GEOLOCALIZATION, CLIP, "geo-flat", {"f1": 0.4, "precision": 0.25, "recall": 1.0, "k": 50.0,
                                                    "auprc": 0.0},
        landform="yardangs", query_mode=QueryMode.TEXT, dataset_dir="/data/geo/dataset",
    ))  # fmt: skip
    save(_record(
        TaskName.GEOLOCALIZATION, CLIP, "geo-normal", _geo_metrics(0.3, 0.2),
        landform="yardangs", query_mode=QueryMode.IMAGE, dataset_dir="/data/geo/dataset",
    ))  # fmt: skip
    return root

"""`marsbench demo`: synthetic data, marsbench-tiny, the whole pipeline, one table per task, and
the report of its out folder (`marsbench report`) in <out>/report/."""

from __future__ import annotations

from pathlib import Path

from marsbench.cli.progress import JobProgress
from marsbench.cli.report import REPORT_DIR, write_report
from marsbench.cli.run import run_geolocalization, run_task
from marsbench.cli.stack import LocalStack, StackUrls
from marsbench.cli.tables import LANDFORM_COLUMNS, geo_table, landform_table, paired_table, render_table
from marsbench.datasets.geo import landforms as geo_landforms
from marsbench.datasets.synth import synthesize
from marsbench.schemas.jobs import TaskName
from marsbench.schemas.runs import QueryMode

DEMO_MODEL = "marsbench-tiny"
DEMO_TASKS = ("paired", "landform", "geo")


def ensure_demo_data(root: Path) -> Path:
    """Synthesise the small dataset once; later demos reuse it."""
    if not all((root / task / "dataset").is_dir() for task in DEMO_TASKS):
        print(f"synthesising the small demo dataset into {root} ...")
        synthesize(root, scale="small", seed=0)
    return root


def _landform(urls: StackUrls, data: Path, out_dir: Path) -> None:
    record, path = run_task(
        urls,
        task=TaskName.LANDFORM,
        dataset_dir=data / "landform" / "dataset",
        model=DEMO_MODEL,
        out_dir=out_dir,
        on_progress=JobProgress(),
    )
    print(f"\nLandform retrieval, {DEMO_MODEL}, {record.counts.get('images')} images (x100):")
    print(landform_table(record))
    chance = [["random ranking", *(f"{100 * record.chance[c]:.2f}" for c in LANDFORM_COLUMNS)]]
    print(render_table(["baseline", *LANDFORM_COLUMNS], chance))
    print(f"mAP {100 * record.metrics['mAP']:.2f} vs chance {100 * record.chance['mAP']:.2f}")
    print(f"record: {path}\n")


def _paired(urls: StackUrls, data: Path, out_dir: Path) -> None:
    record, path = run_task(
        urls,
        task=TaskName.PAIRED,
        dataset_dir=data / "paired" / "dataset",
        model=DEMO_MODEL,
        out_dir=out_dir,
        caption_key="refined_caption",
        on_progress=JobProgress(),
    )
    pairs = record.counts.get("pairs", 0)
    print(f"\nPaired image-text retrieval, {DEMO_MODEL}, {pairs} pairs, refined_caption (x100):")
    print(paired_table(record))
    print(f"random ranking: R@1 {100 / max(pairs, 1):.2f}, R@10 {100 * min(10, pairs) / max(pairs, 1):.2f}")
    print(f"record: {path}\n")


def _geolocalization(urls: StackUrls, data: Path, out_dir: Path) -> None:
    dataset = data / "geo" / "dataset"
    saved = run_geolocalization(
        urls,
        dataset_dir=dataset,
        model=DEMO_MODEL,
        landforms=geo_landforms(dataset),
        modes=list(QueryMode),
        out_dir=out_dir,
        on_progress=JobProgress(),
    )
    tiles = saved[0].record.counts.get("retrieved")
    print(f"\nGlobal geo-localization, {DEMO_MODEL}, {tiles} tiles, parity variant (x100; k = best k):")
    print(geo_table([run.record for run in saved]))
    print(f"records and maps: {out_dir}/geolocalization-*.json, *.map.png\n")


def run_demo(*, data_dir: Path, out_dir: Path) -> int:
    data = ensure_demo_data(data_dir / "demo-data")
    print("starting encoder, indexer and evaluator in this process ...")
    with LocalStack(data_dir=data_dir) as urls:
        _paired(urls, data, out_dir)
        _landform(urls, data, out_dir)
        _geolocalization(urls, data, out_dir)
    print(f"all run records: {out_dir}")
    # The report reads every record in the folder: a rerun's records supersede an earlier demo's.
    print(f"report: {write_report(out_dir, out_dir / REPORT_DIR)}")
    return 0

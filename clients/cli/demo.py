"""`marsbench demo`: synthetic data, marsbench-tiny, the whole pipeline, one table."""

from __future__ import annotations

from pathlib import Path

from marsbench.cli.progress import JobProgress
from marsbench.cli.run import run_task
from marsbench.cli.stack import LocalStack
from marsbench.cli.tables import LANDFORM_COLUMNS, landform_table, render_table
from marsbench.datasets.synth import synthesize
from marsbench.schemas.jobs import TaskName

DEMO_MODEL = "marsbench-tiny"


def ensure_demo_data(root: Path) -> Path:
    """Synthesise the small dataset once; later demos reuse it."""
    if not (root / "landform" / "dataset").is_dir():
        print(f"synthesising the small demo dataset into {root} ...")
        synthesize(root, scale="small", seed=0)
    return root


def run_demo(*, data_dir: Path, out_dir: Path) -> int:
    data = ensure_demo_data(data_dir / "demo-data")
    print("starting encoder, indexer and evaluator in this process ...")
    with LocalStack(data_dir=data_dir) as urls:
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
    print(f"\nmAP {100 * record.metrics['mAP']:.2f} vs chance {100 * record.chance['mAP']:.2f}")
    print(f"run record: {path}")
    return 0

"""`synthesize`: build the synthetic datasets in a staging folder, then publish them atomically."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Collection, Mapping
from pathlib import Path

from ._geo import GEO_LANDFORMS, THUMB_SUBDIR, build_geo
from ._io import file_digests, publish, write_json
from ._landform import build_landform
from ._landforms import LANDFORM_CLASSES
from ._paired import TSV_NAME, build_paired
from ._scales import SCALES, Scale, ScaleSpec
from ._summary import GeoSummary, LandformSummary, PairedSummary, SynthSummary

TASKS: tuple[str, ...] = ("landform", "paired", "geo")
DEFAULT_IMAGE_SIZE = 96
MANIFEST_NAME = "synth.json"
# Bump when the same seed would draw different images, so stale copies are recognisable.
GENERATOR_VERSION = 1


def _landform(
    staging: Path, out: Path, spec: ScaleSpec, seed: int, size: int
) -> tuple[LandformSummary, list[str]]:
    per_class = build_landform(staging / "landform", staging / "landform_folders", spec, seed, size)
    summary = LandformSummary(
        parquet_dir=out / "landform" / "dataset",
        folders_dir=out / "landform_folders" / "dataset",
        classes=LANDFORM_CLASSES,
        per_class=per_class,
        images=sum(per_class.values()),
        shards=spec.landform_shards,
    )
    return summary, ["landform", "landform_folders"]


def _paired(
    staging: Path, out: Path, spec: ScaleSpec, seed: int, size: int
) -> tuple[PairedSummary, list[str]]:
    shards = build_paired(staging / "paired", spec, seed, size)
    dataset = out / "paired" / "dataset"
    summary = PairedSummary(dataset_dir=dataset, tsv=dataset / TSV_NAME, pairs=spec.pairs, shards=shards)
    return summary, ["paired"]


def _geo(staging: Path, out: Path, spec: ScaleSpec, seed: int, size: int) -> tuple[GeoSummary, list[str]]:
    plan, per_mosaic, shards = build_geo(staging / "geo", spec, seed, size)
    dataset = out / "geo" / "dataset"
    summary = GeoSummary(
        dataset_dir=dataset,
        thumb_dir=dataset / THUMB_SUBDIR,
        sources=tuple(per_mosaic),
        tiles=sum(per_mosaic.values()),
        shards=shards,
        points={name: len(points) for name, points in plan.points.items()},
        query_images=dict.fromkeys(GEO_LANDFORMS, spec.geo_queries_per_landform),
    )
    return summary, ["geo"]


def _validate(scale: str, seed: int, tasks: Collection[str], image_size: int) -> None:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {sorted(SCALES)}")
    if seed < 0:
        raise ValueError("seed must be non-negative")
    unknown = set(tasks) - set(TASKS)
    if unknown or not tasks:
        raise ValueError(f"tasks must be a non-empty subset of {TASKS}; got {sorted(tasks)}")
    if not 32 <= image_size <= 1024:
        raise ValueError("image_size must be between 32 and 1024 pixels")


def synthesize(
    out: Path,
    *,
    scale: Scale = "small",
    seed: int = 0,
    tasks: Collection[str] = TASKS,
    image_size: int = DEFAULT_IMAGE_SIZE,
) -> SynthSummary:
    """Write synthetic datasets in the published layouts under `out`; same seed, same bytes.

    Each task folder (`landform`, `landform_folders`, `paired`, `geo`) is built in a hidden
    staging folder inside `out` and renamed into place only when complete, replacing an older
    copy; an interrupted run leaves at most a `.synth-*` staging folder, never a partial task
    folder. Each task folder gets a `synth.json` with the parameters and file digests.
    """
    _validate(scale, seed, tasks, image_size)
    spec = SCALES[scale]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    staging = Path(tempfile.mkdtemp(prefix=".synth-", dir=out))
    landform: LandformSummary | None = None
    paired: PairedSummary | None = None
    geo: GeoSummary | None = None
    folders: list[str] = []
    try:
        if "landform" in tasks:
            landform, produced = _landform(staging, out, spec, seed, image_size)
            folders += produced
        if "paired" in tasks:
            paired, produced = _paired(staging, out, spec, seed, image_size)
            folders += produced
        if "geo" in tasks:
            geo, produced = _geo(staging, out, spec, seed, image_size)
            folders += produced
        params = {"seed": seed, "scale": scale, "image_size": image_size}
        for folder in folders:
            _write_manifest(staging / folder, params)
        for folder in folders:
            publish(staging / folder, out / folder, staging / f"{folder}.old")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return SynthSummary(
        out=out,
        seed=seed,
        scale=scale,
        image_size=image_size,
        landform=landform,
        paired=paired,
        geo=geo,
        elapsed_s=time.perf_counter() - start,
    )


def _write_manifest(folder: Path, params: Mapping[str, object]) -> None:
    """Provenance beside the dataset folder: generator version, parameters, file digests."""
    manifest = {
        "generator": "marsbench.datasets.synth",
        "version": GENERATOR_VERSION,
        **params,
        "files": file_digests(folder),
    }
    write_json(folder / MANIFEST_NAME, manifest)

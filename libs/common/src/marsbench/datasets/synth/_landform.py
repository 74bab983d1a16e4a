"""Task 2 data: one landform per image, as HF parquet shards and as a folder per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._io import encode_png, write_file, write_hf_parquet
from ._landforms import LANDFORM_CLASSES, draw, sample_feature
from ._random import Stream, rng_for
from ._scales import ScaleSpec
from ._terrain import new_canvas, render, sample_style


def landform_image(seed: int, index: int, kind: str, size: int) -> np.ndarray:
    """The pixels of landform image `index` (grayscale uint8, size x size)."""
    rng = rng_for(seed, Stream.LANDFORM_IMAGE, index)
    canvas = new_canvas(rng, size, sample_style(rng))
    draw(canvas, rng, sample_feature(rng, kind))
    return render(canvas, rng)


def plan_labels(seed: int, per_class: int) -> list[int]:
    """Class index of every image, in dataset order: uneven class sizes, classes interleaved."""
    rng = rng_for(seed, Stream.LANDFORM_PLAN)
    counts = np.rint(per_class * rng.uniform(0.75, 1.25, len(LANDFORM_CLASSES))).astype(int)
    labels = np.repeat(np.arange(len(LANDFORM_CLASSES)), np.maximum(counts, 1))
    return [int(v) for v in rng.permutation(labels)]


def image_id(index: int) -> str:
    return f"synth_{index:05d}"


def parquet_name(shard: int, shards: int) -> str:
    return f"train-{shard:05d}-of-{shards:05d}.parquet"


def build_landform(
    parquet_root: Path, folders_root: Path, spec: ScaleSpec, seed: int, size: int
) -> dict[str, int]:
    """Write `<parquet_root>/dataset/data/*.parquet` and `<folders_root>/dataset/<class>/*.png`.

    Returns the number of images per class.
    """
    labels = plan_labels(seed, spec.landform_per_class)
    rows: list[tuple[str, int, bytes]] = []
    for index, label in enumerate(labels):
        png = encode_png(landform_image(seed, index, LANDFORM_CLASSES[label], size))
        rows.append((image_id(index), label, png))
        write_file(folders_root / "dataset" / LANDFORM_CLASSES[label] / f"{image_id(index)}.png", png)
    bounds = np.linspace(0, len(rows), spec.landform_shards + 1).round().astype(int)
    for shard in range(spec.landform_shards):
        path = parquet_root / "dataset" / "data" / parquet_name(shard, spec.landform_shards)
        write_hf_parquet(path, rows[bounds[shard] : bounds[shard + 1]], LANDFORM_CLASSES)
    return {name: labels.count(i) for i, name in enumerate(LANDFORM_CLASSES)}

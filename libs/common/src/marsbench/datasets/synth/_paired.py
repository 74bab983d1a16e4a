"""Task 1 data: image-caption pairs as WebDataset shards plus the pairs TSV.

Shards follow what img2dataset writes for the published set: members `<key>.jpg` and
`<key>.json`, keys of shard number (5 digits) and index in shard (4 digits), the captions as
top-level JSON fields beside `key`, `url` and `status`.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._captions import fused_caption, ori_caption, refined_caption
from ._io import chunks, encode_jpeg, shard_name, write_file, write_tar
from ._landforms import LANDFORM_CLASSES, Feature, add_crater, draw, sample_feature
from ._random import Stream, rng_for
from ._scales import ScaleSpec
from ._terrain import new_canvas, render, sample_style

TSV_NAME = "mars_vl_pairs.tsv"
_URL_ROOT = "https://synth.marsbench.invalid/paired"


@dataclass(frozen=True, slots=True)
class PairSample:
    key: str
    pixels: np.ndarray
    ori_caption: str
    refined_caption: str
    qwen3_fused_caption: str

    @property
    def url(self) -> str:
        return f"{_URL_ROOT}/{self.key}.jpg"


def pair_key(index: int, per_shard: int) -> str:
    return f"{index // per_shard:05d}{index % per_shard:04d}"


def _cell_center(rng: np.random.Generator, cell: int) -> tuple[float, float]:
    """Centre of one of the 3 x 3 frame cells (row-major), jittered within the cell."""
    row, col = divmod(cell, 3)
    jitter = rng.uniform(-0.06, 0.06, 2)
    return (col + 0.5) / 3 + float(jitter[0]), (row + 0.5) / 3 + float(jitter[1])


def _plan_features(rng: np.random.Generator) -> list[Feature]:
    """One landform, or two of different kinds in opposite parts of the frame."""
    two = rng.uniform() < 0.5
    kinds = rng.choice(len(LANDFORM_CLASSES), size=2 if two else 1, replace=False)
    if not two:
        center = _cell_center(rng, int(rng.integers(9)))
        return [sample_feature(rng, LANDFORM_CLASSES[kinds[0]], center=center, scale=0.8)]
    cell = int(rng.choice([0, 1, 2, 3, 5, 6, 7, 8]))
    cells = (cell, 8 - cell)  # point reflection through the centre cell
    return [
        sample_feature(rng, LANDFORM_CLASSES[k], center=_cell_center(rng, c), scale=0.55)
        for k, c in zip(kinds, cells, strict=True)
    ]


def paired_sample(seed: int, index: int, size: int, per_shard: int) -> PairSample:
    rng = rng_for(seed, Stream.PAIRED_IMAGE, index)
    style = sample_style(rng)
    canvas = new_canvas(rng, size, style)
    for _ in range(int(rng.integers(0, 3))):  # small background craters, as anywhere on Mars
        add_crater(canvas, float(rng.uniform()), float(rng.uniform()), float(rng.uniform(0.012, 0.03)))
    features = _plan_features(rng)
    for feature in features:
        draw(canvas, rng, feature)
    return PairSample(
        key=pair_key(index, per_shard),
        pixels=render(canvas, rng),
        ori_caption=ori_caption(features),
        refined_caption=refined_caption(features, style),
        qwen3_fused_caption=fused_caption(features, style),
    )


def _members(sample: PairSample) -> list[tuple[str, bytes]]:
    size = int(sample.pixels.shape[0])
    meta = {
        "key": sample.key,
        "url": sample.url,
        "status": "success",
        "width": size,
        "height": size,
        "ori_caption": sample.ori_caption,
        "refined_caption": sample.refined_caption,
        "qwen3_fused_caption": sample.qwen3_fused_caption,
    }
    return [
        (f"{sample.key}.jpg", encode_jpeg(sample.pixels)),
        (f"{sample.key}.json", json.dumps(meta).encode("utf-8")),
    ]


def _tsv_row(sample: PairSample) -> list[str]:
    return [sample.url, sample.ori_caption, sample.refined_caption, sample.key]


def _tsv(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(["url", "ori_caption", "refined_caption", "key"])
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def build_paired(root: Path, spec: ScaleSpec, seed: int, size: int) -> int:
    """Write `<root>/dataset/000000.tar ...` and the TSV; returns the number of shards."""
    dataset = root / "dataset"
    rows: list[list[str]] = []
    shards = chunks(spec.pairs, spec.pairs_per_shard)
    for shard, indices in enumerate(shards):
        samples = [paired_sample(seed, i, size, spec.pairs_per_shard) for i in indices]
        write_tar(dataset / shard_name(shard), (m for s in samples for m in _members(s)))
        rows.extend(_tsv_row(s) for s in samples)
    write_file(dataset / TSV_NAME, _tsv(rows))
    return len(shards)

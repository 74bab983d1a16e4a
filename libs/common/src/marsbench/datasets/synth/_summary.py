"""What `synthesize` reports: per task, where the data went and how much of it there is."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class LandformSummary:
    parquet_dir: Path  # <out>/landform/dataset (holds data/train-*.parquet)
    folders_dir: Path  # <out>/landform_folders/dataset (one folder per class)
    classes: tuple[str, ...]
    per_class: dict[str, int]
    images: int
    shards: int


@dataclass(frozen=True, slots=True)
class PairedSummary:
    dataset_dir: Path  # <out>/paired/dataset (000000.tar ... and mars_vl_pairs.tsv)
    tsv: Path
    pairs: int
    shards: int


@dataclass(frozen=True, slots=True)
class GeoSummary:
    dataset_dir: Path  # <out>/geo/dataset
    thumb_dir: Path  # <out>/geo/dataset/tiles/image_size_512_delta_0.2/thumb
    sources: tuple[str, ...]
    tiles: int
    shards: int
    points: dict[str, int]  # catalogue points per landform
    query_images: dict[str, int]


@dataclass(frozen=True, slots=True)
class SynthSummary:
    out: Path
    seed: int
    scale: str
    image_size: int
    landform: LandformSummary | None = None
    paired: PairedSummary | None = None
    geo: GeoSummary | None = None
    elapsed_s: float = field(default=0.0, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: paths as strings."""
        return _jsonable(asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value

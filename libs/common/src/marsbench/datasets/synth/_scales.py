"""How much data each scale produces. `small` is for tests and demos, `medium` for training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Scale = Literal["small", "medium"]


@dataclass(frozen=True, slots=True)
class ScaleSpec:
    landform_per_class: int  # mean images per class; each class varies by +-25 %
    landform_shards: int
    pairs: int
    pairs_per_shard: int
    geo_lon_range: tuple[int, int]  # degrees, [west, east): split into 4-degree source mosaics
    geo_lat_range: tuple[int, int]  # degrees, [south, north)
    geo_tiles_per_shard: int
    geo_points_per_landform: int
    geo_clusters_per_landform: int
    geo_queries_per_landform: int


SCALES: dict[str, ScaleSpec] = {
    "small": ScaleSpec(
        landform_per_class=24,
        landform_shards=2,
        pairs=240,
        pairs_per_shard=100,
        geo_lon_range=(-4, 4),
        geo_lat_range=(-2, 2),
        geo_tiles_per_shard=250,
        geo_points_per_landform=8,
        geo_clusters_per_landform=1,
        geo_queries_per_landform=3,
    ),
    "medium": ScaleSpec(
        landform_per_class=96,
        landform_shards=4,
        pairs=960,
        pairs_per_shard=250,
        geo_lon_range=(-8, 8),
        geo_lat_range=(-4, 4),
        geo_tiles_per_shard=500,
        geo_points_per_landform=20,
        geo_clusters_per_landform=2,
        geo_queries_per_landform=5,
    ),
}

# Mosaics are 4 degrees wide, as the CTX global mosaic's source tiles are.
MOSAIC_WIDTH_DEG = 4

# Tiles are 0.2 degrees: in tenths of a degree, so corners are exact integers.
TILE_TENTHS = 2

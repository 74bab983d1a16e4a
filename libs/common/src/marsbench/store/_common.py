"""Checks and small conversions both backends share, so they fail alike on the same mistakes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

import numpy as np

from marsbench.store.base import CollectionMismatch, CollectionSpec, GeoBox, StoredPoint


def check_same_vectors(spec: CollectionSpec, existing: Mapping[str, int]) -> None:
    """Raise `CollectionMismatch` unless the collection holds exactly the vectors `spec` asks for."""
    wanted = dict(spec.vectors)
    if dict(existing) != wanted:
        raise CollectionMismatch(
            f"collection {spec.name!r} holds vectors {dict(existing)}, but {wanted} were asked for; "
            "delete it or choose another collection name"
        )


def check_spec(spec: CollectionSpec) -> None:
    if not spec.vectors:
        raise ValueError(f"collection {spec.name!r} needs at least one named vector")
    for vector, dim in spec.vectors.items():
        if not vector or dim <= 0:
            raise ValueError(f"collection {spec.name!r}: bad vector {vector!r} of dimension {dim}")


def check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")


def query_rows(vectors: np.ndarray) -> list[list[float]]:
    """Query vectors as lists of floats, one per row of a 2-D array."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"query vectors must be a 2-D array (n, d), got shape {matrix.shape}")
    return matrix.tolist()


def as_floats(vector: np.ndarray) -> list[float]:
    # qdrant-client wants lists (it validates with pydantic).
    return np.asarray(vector, dtype=np.float32).tolist()


def as_buffer(vector: np.ndarray) -> memoryview[float]:
    """A float32 vector as qdrant-edge takes it fastest: a memoryview over the row, no Python list.
    qdrant-edge-py 0.9.0 has no numpy path (it reads any sequence element by element: a numpy row
    costs 1.9x `tolist()`), but a memoryview of a contiguous float32 row skips building the list:
    6.7 against 8.7 ms per 256 1024-d points here (benchmarks/store_ingest.py measures it)."""
    # `.data` is the array's own memoryview (numpy types `__buffer__` only from Python 3.12 on).
    return np.ascontiguousarray(vector, dtype=np.float32).data.cast("B").cast("f")


def canonical_ids(ids: Sequence[str]) -> list[str]:
    """Ids in the canonical UUID form both engines return, without duplicates, order kept."""
    return list(dict.fromkeys(str(uuid.UUID(i)) for i in ids))


def in_request_order(ids: Sequence[str], points: Sequence[StoredPoint]) -> list[StoredPoint]:
    """Points in the order of `ids` (canonical, see `canonical_ids`); missing ids are skipped."""
    by_id = {point.id: point for point in points}
    return [by_id[i] for i in ids if i in by_id]


# Qdrant's geo index loses points when a box edge lies exactly on a pole or on longitude 180
# (measured with qdrant-edge 0.9.0: a whole-planet box matched 0 of 400 points, a box to latitude 90
# 42 of 190). Such edges are pulled in by a millionth of a degree (6 cm on Mars): no tile lies there
# (tiles stop at 80 degrees, longitudes run from -180 up to but not including 180).
_EDGE_MARGIN_DEG = 1e-6


def box_corners(box: GeoBox) -> tuple[float, float, float, float]:
    """(lon_min, lat_min, lon_max, lat_max) as the engine can search them."""
    limit = 90.0 - _EDGE_MARGIN_DEG
    lon_max = min(box.lon_max, 180.0 - _EDGE_MARGIN_DEG)
    return box.lon_min, max(box.lat_min, -limit), lon_max, min(box.lat_max, limit)

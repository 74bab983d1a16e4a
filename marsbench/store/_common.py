"""Checks and small conversions both backends share, so they fail alike on the same mistakes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

import numpy as np

from marsbench.store.base import CollectionMismatch, CollectionSpec, StoredPoint


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
    # Both engines take lists fastest: handing qdrant_edge a numpy row is slower than tolist().
    return np.asarray(vector, dtype=np.float32).tolist()


def canonical_ids(ids: Sequence[str]) -> list[str]:
    """Ids in the canonical UUID form both engines return, without duplicates, order kept."""
    return list(dict.fromkeys(str(uuid.UUID(i)) for i in ids))


def in_request_order(ids: Sequence[str], points: Sequence[StoredPoint]) -> list[StoredPoint]:
    """Points in the order of `ids` (canonical, see `canonical_ids`); missing ids are skipped."""
    by_id = {point.id: point for point in points}
    return [by_id[i] for i in ids if i in by_id]

"""The vector store interface every backend implements.

Nothing above this seam knows which backend stores the vectors. Vectors are always *named*
(e.g. ``{"image": 512}``, or ``{"image": 512, "text": 512}`` for paired data) so that single-
and multi-vector collections take one code path. Every vector is L2-normalised by the encoder
and the distance is cosine/dot, so scores are inner products.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from marsbench.store.sidecar import BulkPoints


class PayloadIndex(StrEnum):
    KEYWORD = "keyword"
    INTEGER = "integer"
    FLOAT = "float"
    GEO = "geo"


@dataclass(frozen=True)
class CollectionSpec:
    """What a collection holds: named vectors with their dimensions, and payload indexes."""

    name: str
    vectors: Mapping[str, int]
    payload_indexes: Mapping[str, PayloadIndex] = field(default_factory=dict)


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    vectors: dict[str, int]
    points: int
    # Why its files cannot be trusted (`CollectionDamaged`), for a damaged collection; it then counts 0.
    damaged: str | None = None


@dataclass(frozen=True, slots=True)
class Point:
    """A point to write. `id` is a UUID string (see `marsbench.store.naming.point_id`)."""

    id: str
    vectors: Mapping[str, np.ndarray]
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredPoint:
    id: str
    payload: dict[str, Any]
    vectors: dict[str, np.ndarray]


@dataclass(frozen=True)
class GeoBox:
    """Axis-aligned region in degrees; matches points whose geo payload lies inside."""

    field: str
    lon_min: float
    lat_min: float
    lon_max: float
    lat_max: float


@dataclass(frozen=True)
class GeoRadius:
    field: str
    lon: float
    lat: float
    radius_m: float


@dataclass(frozen=True)
class SearchFilter:
    """Conditions that must all hold: exact keyword/integer matches and optional geo regions."""

    match: Mapping[str, str | int] = field(default_factory=dict)
    geo_box: GeoBox | None = None
    geo_radius: GeoRadius | None = None


@dataclass(frozen=True)
class SnapshotWritten:
    """What `VectorStore.export_snapshot` wrote: the collection's points at the time it was taken."""

    path: Path
    points: int


class StoreError(Exception):
    """Base for vector store failures."""


class StoreUnavailable(StoreError):
    """The store did not answer (a Qdrant server down, restarting or unreachable): worth retrying."""


class CollectionNotFound(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"collection {name!r} does not exist")
        self.name = name


class CollectionMismatch(StoreError):
    """An existing collection was asked to hold vectors of another shape."""


class CollectionExists(StoreError):
    """A snapshot was to be imported into a collection that already exists (delete it first)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"collection {name!r} already exists; delete it first or import under another name")
        self.name = name


class SnapshotInvalid(StoreError):
    """A snapshot file this backend cannot import: not one of its snapshots, damaged, or unsafe."""


class CollectionDamaged(StoreError):
    """The collection's files no longer hold what was written (a file truncated, overwritten or
    removed): its points or vectors cannot be trusted, so it is not opened. Re-indexing rebuilds it."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(
            f"collection {name!r} is damaged: {reason}. Its search results cannot be trusted; index it "
            "again: a new indexing job for it (POST /v1/jobs, or `marsbench run`), or resuming its failed "
            "job (`marsbench jobs resume JOB_ID`), deletes it and rebuilds it from the dataset"
        )
        self.name = name
        self.reason = reason


@runtime_checkable
class VectorStore(Protocol):
    """Operations the indexer and evaluator need; each backend implements all of them."""

    def ensure_collection(self, spec: CollectionSpec) -> bool:
        """Create the collection if absent (returns True if created). An existing collection with
        other vector names or dimensions raises `CollectionMismatch`."""
        ...

    def collection_info(self, name: str) -> CollectionInfo: ...

    def list_collections(self) -> list[CollectionInfo]: ...

    def delete_collection(self, name: str) -> bool: ...

    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        """Write points (insert or replace by id). Searchable when it returns; durable only after the
        next `flush` (or `seal`, or `close`): a crash before that may lose them."""
        ...

    def flush(self, collection: str) -> None:
        """The durability point: every point upserted so far survives a crash once this returns. The
        indexer calls it when a resumable unit is finished, before recording the unit as done."""
        ...

    def bulk_read(self, collection: str, *, using: str, geo_field: str | None = None) -> BulkPoints | None:
        """Every point's id, vector `using` and (lon, lat) of `geo_field` at once, without a copy
        (a memory map), if the backend keeps such a copy and it matches the collection; else None (the
        caller then scrolls)."""
        ...

    def count(self, collection: str) -> int: ...

    def seal(self, collection: str) -> None:
        """Record what the collection holds now (called when an indexing job completes), so that damage
        done to its files later is detected when it is next opened (`CollectionDamaged`). The next
        write unseals it. A backend that checks its own storage (a Qdrant server) does nothing."""
        ...

    def search_batch(
        self,
        collection: str,
        vectors: np.ndarray,
        *,
        using: str,
        limit: int,
        exact: bool = True,
        filter: SearchFilter | None = None,
        with_payload: bool = True,
    ) -> list[list[Hit]]:
        """Top-`limit` hits for each row of `vectors` (shape (n, d)), best first."""
        ...

    def retrieve(
        self, collection: str, ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[StoredPoint]: ...

    def scroll(
        self, collection: str, *, with_vectors: bool = False, batch_size: int = 1024
    ) -> Iterator[StoredPoint]:
        """Every point of the collection, in pages; order is unspecified."""
        ...

    def export_snapshot(self, collection: str, dest: Path) -> SnapshotWritten:
        """Write a consistent snapshot of the collection to the file `dest` (its parent exists); the
        collection stays as it is. Only this backend's `import_snapshot` reads the file."""
        ...

    def import_snapshot(self, path: Path, collection: str) -> CollectionInfo:
        """Create `collection` from a snapshot file `export_snapshot` wrote; `CollectionExists` if it is
        there already, `SnapshotInvalid` if the file is not such a snapshot (nothing is created then)."""
        ...

    def close(self) -> None: ...

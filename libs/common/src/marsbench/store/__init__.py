"""The vector store seam: one interface, two backends (embedded Qdrant engine, Qdrant server)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from marsbench.store.base import (
    CollectionDamaged,
    CollectionExists,
    CollectionInfo,
    CollectionMismatch,
    CollectionNotFound,
    CollectionSpec,
    GeoBox,
    GeoRadius,
    Hit,
    PayloadIndex,
    Point,
    SearchFilter,
    SnapshotInvalid,
    SnapshotWritten,
    StoredPoint,
    StoreError,
    StoreUnavailable,
    VectorStore,
)
from marsbench.store.edge import EmbeddedStore, StoreLocked
from marsbench.store.factory import ClusterOptions, open_store
from marsbench.store.naming import collection_name, point_id
from marsbench.store.sidecar import BulkPoints

if TYPE_CHECKING:
    from marsbench.store.server import ServerStore

__all__ = [
    "BulkPoints",
    "ClusterOptions",
    "CollectionDamaged",
    "CollectionExists",
    "CollectionInfo",
    "CollectionMismatch",
    "CollectionNotFound",
    "CollectionSpec",
    "EmbeddedStore",
    "GeoBox",
    "GeoRadius",
    "Hit",
    "PayloadIndex",
    "Point",
    "SearchFilter",
    "ServerStore",
    "SnapshotInvalid",
    "SnapshotWritten",
    "StoreError",
    "StoreLocked",
    "StoreUnavailable",
    "StoredPoint",
    "VectorStore",
    "collection_name",
    "open_store",
    "point_id",
]


def __getattr__(name: str) -> Any:
    # ServerStore loads lazily: importing qdrant-client costs over a second that embedded runs skip.
    if name == "ServerStore":
        from marsbench.store.server import ServerStore

        return ServerStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

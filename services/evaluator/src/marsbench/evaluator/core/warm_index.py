"""A geo collection held in memory for exact top-k: one matrix-vector product per query.

The reference reloads its saved features and rebuilds its index for every query run; the engine's
exact search costs about a second at 1.4 million tiles with payloads. A warm index reads the
vectors and tile positions out of the store once per collection, then ranks a query with
`vectors @ q` and `argpartition`. It is rebuilt when the collection's point count changes (an
indexing job added tiles).

Reading: `VectorStore.bulk_read` first (the embedded store's sidecar, memory-mapped and checked
against the seal manifest: seconds at 1.4 million tiles, and the vectors stay one copy, the page
cache's); else `scroll` (about 150 s at 1.4 million tiles), rows filled in place.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from marsbench.store import VectorStore
from marsbench.tasks.geo import LOCATION_FIELD, SCORE_DECIMALS, tile_lonlat

log = logging.getLogger(__name__)

# Within a group of equal rounded scores the raw float32 score decides first, as faiss's order does
# in the reference (docs/parity.md, "What marsbench would need for parity on ties"); exact ties fall
# back to the point id, a deterministic order.
ORDER_RULE = (
    f"score rounded to {SCORE_DECIMALS} decimals descending, then raw float32 score descending, "
    "then point id ascending"
)


@dataclass(frozen=True)
class WarmIndex:
    collection: str
    vectors: np.ndarray  # (N, D) float32, C-contiguous
    lonlat: np.ndarray  # (N, 2) float64
    id_rank: np.ndarray  # (N,) rank of each row's point id in sorted order: the tie-break
    build_s: float
    source: str = "scroll"  # "bulk": memory-mapped from the store's sidecar

    @property
    def count(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.vectors.nbytes + self.lonlat.nbytes + self.id_rank.nbytes)

    @classmethod
    def build(cls, store: VectorStore, collection: str, *, using: str) -> WarmIndex:
        started = time.perf_counter()
        read = getattr(store, "bulk_read", None)  # stand-ins for a store may lack it
        bulk = read(collection, using=using, geo_field=LOCATION_FIELD) if read is not None else None
        if bulk is not None and bulk.lonlat is not None and not np.isnan(bulk.lonlat).any():
            index = cls(collection, bulk.vectors, bulk.lonlat, bulk.id_rank(), time.perf_counter() - started,
                        source="bulk")  # fmt: skip
            log.info("warm index of %s: %d tiles memory-mapped in %.1f s", collection, index.count,
                     index.build_s)  # fmt: skip
            return index
        return cls.build_by_scroll(store, collection, using=using, started=started)

    @classmethod
    def build_by_scroll(
        cls, store: VectorStore, collection: str, *, using: str, started: float | None = None
    ) -> WarmIndex:
        started = time.perf_counter() if started is None else started
        expected = store.count(collection)
        vectors: np.ndarray | None = None
        lonlat = np.empty((expected, 2), dtype=np.float64)
        ids: list[str] = []
        for row, point in enumerate(store.scroll(collection, with_vectors=True)):
            if row >= expected:
                raise RuntimeError(f"collection {collection!r} grew while it was read; retry")
            vector = point.vectors[using]
            if vectors is None:
                vectors = np.empty((expected, vector.shape[-1]), dtype=np.float32)
            vectors[row] = vector
            lonlat[row] = tile_lonlat(point.payload)
            ids.append(point.id)
        if vectors is None or len(ids) != expected:
            raise RuntimeError(f"collection {collection!r} changed while it was read; retry")
        id_rank = np.empty(len(ids), dtype=np.int64)
        id_rank[np.argsort(np.array(ids))] = np.arange(len(ids))
        index = cls(collection, vectors, lonlat, id_rank, time.perf_counter() - started)
        log.info("warm index of %s: %d tiles, %.2f GiB, built in %.1f s", collection, index.count,
                 index.nbytes / 2**30, index.build_s)  # fmt: skip
        return index

    def ranked_lonlat(self, query: np.ndarray, k: int) -> np.ndarray:
        """(lon, lat) of the top-k tiles in ORDER_RULE order: exact inner products in float32."""
        scores = self.vectors @ np.asarray(query, dtype=np.float32)
        k = min(k, scores.shape[0])
        top = np.argpartition(-scores, k - 1)[:k] if k < scores.shape[0] else np.arange(k)
        raw = scores[top].astype(np.float64)
        order = np.lexsort((self.id_rank[top], -raw, -np.round(raw, SCORE_DECIMALS)))
        return self.lonlat[top[order]]


class WarmIndexCache:
    """Warm indexes by collection within a memory budget; one build at a time per collection."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._indexes: dict[str, WarmIndex] = {}
        self._lock = threading.Lock()  # guards the dicts
        self._building: dict[str, threading.Lock] = {}  # one build at a time per collection

    def get(self, store: VectorStore, collection: str, *, using: str, dim: int) -> WarmIndex | None:
        """The collection's warm index, built or rebuilt as needed; None when it would not fit the
        budget (the caller then asks the engine)."""
        count = store.count(collection)
        if count * dim * 4 > self.budget_bytes:
            return None
        with self._lock:
            build_lock = self._building.setdefault(collection, threading.Lock())
        # A build reads the whole collection (minutes at 1.4M tiles): other collections go on.
        with build_lock:
            with self._lock:
                current = self._indexes.get(collection)
                if current is not None and current.count == count:
                    return current
                self._indexes.pop(collection, None)  # free the stale copy before reading the new one
                self._evict_for(count * dim * 4)
            index = WarmIndex.build(store, collection, using=using)
            with self._lock:
                self._indexes[collection] = index
            return index

    def _evict_for(self, need: int) -> None:
        while self._indexes and sum(i.nbytes for i in self._indexes.values()) + need > self.budget_bytes:
            oldest = next(iter(self._indexes))
            log.info("dropping the warm index of %s to make room", oldest)
            del self._indexes[oldest]

"""Upsert throughput and exact-search latency of the embedded store.

    python benchmarks/store_upsert.py [--points 50000] [--dim 512] [--batch 256] [--limit 20000]

Writes random L2-normalised vectors through `EmbeddedStore.upsert` (no flush per call since issue 19;
benchmarks/store_ingest.py measures the flush-per-unit path against the raw engine), then times
exact top-`limit` searches, one query at a time and as one batch. The store lives in a temporary
directory unless --root is given.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from marsbench.store import CollectionSpec, EmbeddedStore, PayloadIndex, Point, point_id

COLLECTION = "bench__random__upsert"


def main() -> None:
    args = _parse_args()
    if args.root is not None:
        _run(args, args.root)
        return
    with tempfile.TemporaryDirectory(prefix="marsbench-bench-") as tmp:
        _run(args, Path(tmp))


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--limit", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--root", type=Path, default=None, help="store directory (default: a temporary one)")
    return parser.parse_args()


def _run(args: argparse.Namespace, root: Path) -> None:
    vectors = _random_unit_vectors(args.points, args.dim, seed=0)
    queries = _random_unit_vectors(args.queries, args.dim, seed=1)
    with EmbeddedStore(root) as store:
        store.ensure_collection(
            CollectionSpec(COLLECTION, {"image": args.dim}, {"label": PayloadIndex.KEYWORD})
        )
        seconds = _upsert_all(store, vectors, args.batch)
        print(
            f"upsert: {args.points} x {args.dim}-d in batches of {args.batch}: {seconds:.2f} s, "
            f"{args.points / seconds:,.0f} points/s"
        )
        _time_searches(store, queries, args.limit)


def _random_unit_vectors(n: int, dim: int, *, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _upsert_all(store: EmbeddedStore, vectors: np.ndarray, batch: int) -> float:
    start = time.perf_counter()
    for first in range(0, len(vectors), batch):
        points = [
            Point(point_id(f"item-{i}"), {"image": vectors[i]}, {"key": f"item-{i}", "label": f"c{i % 10}"})
            for i in range(first, min(first + batch, len(vectors)))
        ]
        store.upsert(COLLECTION, points)
    return time.perf_counter() - start


def _time_searches(store: EmbeddedStore, queries: np.ndarray, limit: int) -> None:
    store.search_batch(COLLECTION, queries[:1], using="image", limit=limit)  # warm up
    singles = []
    for query in queries:
        start = time.perf_counter()
        store.search_batch(COLLECTION, query[None, :], using="image", limit=limit, with_payload=False)
        singles.append(time.perf_counter() - start)
    print(
        f"exact top-{limit}, one query, no payload: median {1000 * np.median(singles):.1f} ms "
        f"(min {1000 * min(singles):.1f}, max {1000 * max(singles):.1f})"
    )
    start = time.perf_counter()
    store.search_batch(COLLECTION, queries[:1], using="image", limit=limit, with_payload=True)
    print(f"exact top-{limit}, one query, with payload: {1000 * (time.perf_counter() - start):.1f} ms")
    start = time.perf_counter()
    store.search_batch(COLLECTION, queries, using="image", limit=limit, with_payload=False)
    batch_ms = 1000 * (time.perf_counter() - start)
    print(
        f"exact top-{limit}, batch of {len(queries)}, no payload: {batch_ms:.1f} ms "
        f"({batch_ms / len(queries):.1f} ms per query)"
    )


if __name__ == "__main__":
    main()

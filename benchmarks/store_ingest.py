"""Ingest into the embedded store against the engine's raw update rate, and the warm index's build.

    python benchmarks/store_ingest.py [--points 1400000] [--dim 1024] [--batch 64] [--unit 1024]
                                      [--in-flight 3] [--raw-batch 16384] [--old-points 100000]
                                      [--no-warm] [--dir DIR] [--json PATH]

One run, the same vectors and payloads for every condition (clustered unit vectors and geo-task
payloads of `store_full_scale.py`; the vectors are generated once, in chunks, into a raw float32 file
that every condition reads as a memory map, so they are never held twice):

(a) raw engine: `qdrant_edge` `EdgeShard.update` of prebuilt `qe.Point`s in batches of --raw-batch,
    one `flush` at the end; only `update` and that flush are timed (building the points is not). The
    engine's default config (a write-ahead log), as before.
(a') the same with the engine configured as `EmbeddedStore` creates shards (`wal_enabled=False`): the
    like-for-like rate, reported beside (a), not instead of it.
(b) marsbench as the indexer drives it: `EmbeddedStore.upsert` of batches of --batch points from
    --in-flight worker threads, a `UnitTracker` per unit of --unit points calling `store.flush` when
    the unit's last batch is written (the indexer's `_unit_finished`); timed from the first batch to
    the last flush (building `Point`s from the memory map included), then `seal` apart.
(c) the old behaviour, flush after every batch of --batch, single thread, on the first --old-points.

Ratio b/a is the target (>= 0.8); b/a' is reported too. Then the warm index over (b)'s sealed
collection: built through `scroll` (the old way) and through `bulk_read` (the sidecar), with the
top-100 of 3 queries compared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from store_full_scale import ClusteredVectors, tile_of

from marsbench.evaluator.core.warm_index import WarmIndex
from marsbench.indexer.core.units import UnitTracker
from marsbench.store import CollectionSpec, EmbeddedStore, PayloadIndex, Point

VECTOR = "image"
GEN_CHUNK = 65_536


def main() -> None:
    args = _parse_args()
    root = Path(tempfile.mkdtemp(prefix="marsbench-ingest-", dir=args.dir))
    try:
        results = _run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=1_400_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=64, help="indexer batch (index_batch_size)")
    parser.add_argument("--unit", type=int, default=1024, help="points per resumable unit (shard)")
    parser.add_argument("--in-flight", type=int, default=3, help="indexer worker threads (index_in_flight)")
    parser.add_argument("--raw-batch", type=int, default=16_384)
    parser.add_argument(
        "--flush-interval",
        type=float,
        default=1.0,
        help="(b): at most one flush per this many seconds (JobManager unit_flush_interval_s); 0: per unit",
    )
    parser.add_argument("--old-points", type=int, default=100_000, help="points for (c); 0 skips it")
    parser.add_argument("--no-warm", action="store_true")
    parser.add_argument("--clusters", type=int, default=4096)
    parser.add_argument("--dir", type=Path, default=None, help="parent of the scratch folder (default /tmp)")
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args()


def _say(text: str) -> None:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"[{time.strftime('%H:%M:%S')} load {load}] {text}", flush=True)


def _spec(name: str, dim: int) -> CollectionSpec:
    return CollectionSpec(
        name,
        {VECTOR: dim},
        {"location": PayloadIndex.GEO, "source": PayloadIndex.KEYWORD, "name": PayloadIndex.KEYWORD},
    )


def _run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    n, dim = args.points, args.dim
    results: dict[str, Any] = {
        "points": n,
        "dim": dim,
        "batch": args.batch,
        "unit": args.unit,
        "in_flight": args.in_flight,
        "flush_interval_s": args.flush_interval,
        "raw_batch": args.raw_batch,
        "load": {},
    }
    results["load"]["start"] = os.getloadavg()
    _say(f"generating {n} x {dim} vectors and payloads")
    started = time.perf_counter()
    data = ClusteredVectors.create(args.clusters, dim, seed=0)
    raw_path = root / "vectors.f32"
    out = np.lib.format.open_memmap(raw_path, mode="w+", dtype=np.float32, shape=(n, dim))
    for first in range(0, n, GEN_CHUNK):
        count = min(GEN_CHUNK, n - first)
        out[first : first + count] = data.batch(first, count)
    out.flush()
    del out
    vectors = np.load(raw_path, mmap_mode="r")
    tiles = [tile_of(i) for i in range(n)]
    ids = [t[0] for t in tiles]
    payloads = [t[2] for t in tiles]
    del tiles
    results["generate_s"] = time.perf_counter() - started
    _say(f"generated in {results['generate_s']:.1f} s")

    for key, label, wal in (
        ("raw", "(a) raw engine", None),
        ("raw_no_wal", "(a') raw engine, no WAL", False),
    ):
        results[key] = _raw_engine(root / key, vectors, ids, payloads, args, wal_enabled=wal)
        r = results[key]
        _say(
            f"{label}: {r['rate']:,.0f} points/s ({r['update_s']:.1f} s update, {r['flush_s']:.1f} s flush; "
            f"building the points {r['build_points_s']:.1f} s)"
        )
        shutil.rmtree(root / key, ignore_errors=True)

    store_root = root / "store"
    with EmbeddedStore(store_root) as store:
        results["marsbench"] = _marsbench(store, vectors, ids, payloads, args)
        m = results["marsbench"]
        _say(
            f"(b) marsbench: {m['rate']:,.0f} points/s ({m['wall_s']:.1f} s; {m['flushes']} flushes "
            f"{m['flush_s']:.1f} s); seal {m['seal_s']:.1f} s"
        )
        results["ratio_b_over_a"] = m["rate"] / results["raw"]["rate"]
        results["ratio_b_over_a_with_build"] = m["rate"] / results["raw"]["rate_with_build"]
        results["ratio_b_over_a_no_wal"] = m["rate"] / results["raw_no_wal"]["rate"]
        results["ratio_b_over_a_no_wal_with_build"] = m["rate"] / results["raw_no_wal"]["rate_with_build"]
        _say(
            f"ratio b/a = {results['ratio_b_over_a']:.3f}; against the engine with its points built "
            f"({results['raw']['rate_with_build']:,.0f} points/s): "
            f"{results['ratio_b_over_a_with_build']:.3f}; "
            f"b/a' = {results['ratio_b_over_a_no_wal']:.3f}, with its points built "
            f"{results['ratio_b_over_a_no_wal_with_build']:.3f}"
        )
        if not args.no_warm:
            results["warm"] = _warm(store, data, args)
    if args.old_points:
        results["old"] = _old_path(root / "old", vectors, ids, payloads, args)
        o = results["old"]
        _say(
            f"(c) old, flush per batch, {o['points']} points: {o['rate']:,.0f} points/s "
            f"(flush {o['flush_share']:.0%} of the time)"
        )
        shutil.rmtree(root / "old", ignore_errors=True)
    results["load"]["end"] = os.getloadavg()
    print(json.dumps({k: v for k, v in results.items() if k != "load"}, indent=1, default=float))
    return results


def _raw_engine(
    path: Path,
    vectors: np.ndarray,
    ids: list[str],
    payloads: list[dict[str, Any]],
    args: argparse.Namespace,
    *,
    wal_enabled: bool | None,
) -> dict[str, Any]:
    """(a): the engine alone; points built untimed, `update` of big batches, one flush."""
    path.mkdir(parents=True)
    config = qe.EdgeConfig(
        vectors={VECTOR: qe.EdgeVectorParams(size=args.dim, distance=qe.Distance.Dot)},
        wal_enabled=wal_enabled,
    )
    shard = qe.EdgeShard.create(str(path), config)
    for field, kind in (
        ("location", qe.PayloadSchemaType.Geo),
        ("source", qe.PayloadSchemaType.Keyword),
        ("name", qe.PayloadSchemaType.Keyword),
    ):
        shard.update(qe.UpdateOperation.create_field_index(field, kind))
    update_s = build_s = 0.0
    for first in range(0, len(ids), args.raw_batch):
        t0 = time.perf_counter()
        rows = np.ascontiguousarray(vectors[first : first + args.raw_batch])
        points = [
            qe.Point(ids[first + i], {VECTOR: rows[i].tolist()}, payloads[first + i])
            for i in range(len(rows))
        ]
        operation = qe.UpdateOperation.upsert_points(points)
        t1 = time.perf_counter()
        shard.update(operation)
        update_s += time.perf_counter() - t1
        build_s += t1 - t0
        del points, operation
    t0 = time.perf_counter()
    shard.flush()
    flush_s = time.perf_counter() - t0
    count = shard.count(qe.CountRequest(exact=True))
    shard.close()
    return {
        "update_s": update_s,
        "flush_s": flush_s,
        "build_points_s": build_s,
        "count": count,
        "rate": len(ids) / (update_s + flush_s),
        # The engine as any Python caller feeds it: building its `qe.Point`s counted too.
        "rate_with_build": len(ids) / (update_s + flush_s + build_s),
    }


def _marsbench(
    store: EmbeddedStore,
    vectors: np.ndarray,
    ids: list[str],
    payloads: list[dict[str, Any]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """(b): `upsert` per indexer batch from worker threads, `flush` per finished unit, then `seal`."""
    name = "bench__ingest__new"
    store.ensure_collection(_spec(name, args.dim))
    flushes: list[float] = []
    upserts: list[float] = []
    flush_lock = threading.Lock()

    flushed_at = [-float("inf")]

    def unit_finished(unit: str) -> None:
        # As JobManager._unit_finished / _commit_units: a flush when the interval has passed.
        with flush_lock:
            if time.monotonic() - flushed_at[0] < args.flush_interval:
                return
            t0 = time.perf_counter()
            store.flush(name)
            flushed_at[0] = time.monotonic()
            flushes.append(time.perf_counter() - t0)

    tracker = UnitTracker(unit_finished)

    def write(first: int, count: int, units: list[str]) -> None:
        rows = vectors[first : first + count]
        points = [Point(ids[first + i], {VECTOR: rows[i]}, payloads[first + i]) for i in range(count)]
        t0 = time.perf_counter()
        store.upsert(name, points)
        upserts.append(time.perf_counter() - t0)
        tracker.processed(units)

    n = len(ids)
    started = time.perf_counter()
    with ThreadPoolExecutor(args.in_flight) as pool:
        pending: list[Any] = []
        for first in range(0, n, args.batch):
            count = min(args.batch, n - first)
            units = [f"u{(first + i) // args.unit}" for i in range(count)]
            tracker.submitted(units)
            pending.append(pool.submit(write, first, count, units))
            last_unit = (first + count) // args.unit
            if (first + count) % args.unit == 0 or first + count == n:
                tracker.read_to_end(f"u{(first + count - 1) // args.unit}")
            del last_unit
            if len(pending) >= 4 * args.in_flight:
                pending.pop(0).result()
        for future in pending:
            future.result()
    t0 = time.perf_counter()
    store.flush(name)  # the last units (the job's end)
    flushes.append(time.perf_counter() - t0)
    wall_s = time.perf_counter() - started
    t0 = time.perf_counter()
    store.seal(name)
    seal_s = time.perf_counter() - t0
    return {
        "wall_s": wall_s,
        "rate": n / wall_s,
        "upsert_s": sum(upserts),
        "flushes": len(flushes),
        "flush_s": sum(flushes),
        "seal_s": seal_s,
        "count": store.count(name),
        "sidecar_gib": _du(store.root / "collections" / name / "sidecar") / 2**30,
        "shard_gib": _du(store.root / "collections" / name / "shard") / 2**30,
    }


def _old_path(
    path: Path, vectors: np.ndarray, ids: list[str], payloads: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    """(c): the behaviour before: `upsert` then a flush per batch, one thread."""
    name = "bench__ingest__old"
    n = min(args.old_points, len(ids))
    with EmbeddedStore(path) as store:
        store.ensure_collection(_spec(name, args.dim))
        flush_s = 0.0
        started = time.perf_counter()
        for first in range(0, n, args.batch):
            count = min(args.batch, n - first)
            rows = vectors[first : first + count]
            store.upsert(
                name, [Point(ids[first + i], {VECTOR: rows[i]}, payloads[first + i]) for i in range(count)]
            )
            t0 = time.perf_counter()
            store.flush(name)
            flush_s += time.perf_counter() - t0
        wall_s = time.perf_counter() - started
    return {
        "points": n,
        "wall_s": wall_s,
        "rate": n / wall_s,
        "flush_s": flush_s,
        "flush_share": flush_s / wall_s,
    }


def _warm(store: EmbeddedStore, data: ClusteredVectors, args: argparse.Namespace) -> dict[str, Any]:
    name = "bench__ingest__new"
    _say("warm index: bulk read (sidecar)")
    bulk = WarmIndex.build(store, name, using=VECTOR)
    assert bulk.source == "bulk", "the sealed collection should be read from its sidecar"
    queries = data.queries(3)
    t0 = time.perf_counter()
    bulk_top = [bulk.ranked_lonlat(q, 100) for q in queries]
    first_query_s = time.perf_counter() - t0
    _say(f"warm index by bulk read: {bulk.build_s:.1f} s; 3 queries {first_query_s:.2f} s")
    _say("warm index: scroll (the old way)")
    scroll = WarmIndex.build_by_scroll(store, name, using=VECTOR)
    same = all(
        np.array_equal(scroll.ranked_lonlat(q, 100), top) for q, top in zip(queries, bulk_top, strict=True)
    )
    _say(f"warm index by scroll: {scroll.build_s:.1f} s; identical top-100: {same}")
    return {
        "bulk_s": bulk.build_s,
        "scroll_s": scroll.build_s,
        "bulk_3_queries_s": first_query_s,
        "identical_top100": same,
    }


def _du(path: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


if __name__ == "__main__":
    main()

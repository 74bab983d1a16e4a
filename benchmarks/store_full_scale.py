"""The embedded store at full geo scale: ingest rate, exact top-20,000 latency, memory, disk.

    python benchmarks/store_full_scale.py [--points 1400000] [--dim 1024] [--batch 256] [--queries 15]
                                          [--limit 20000] [--dir DIR] [--keep] [--seed 0] [--json PATH]

Streams clustered unit vectors (never all in memory at once: each batch is drawn with numpy
from a fixed set of cluster centres with per-cluster spread, then normalised) with geo-task
payloads (`{"name", "source", "location": {"lon", "lat"}, "unit"}`, one tile per corner of the
0.2-degree grid) through `EmbeddedStore.upsert`, the indexer's code path, into a collection
with the geo task's payload indexes (GEO on "location", KEYWORD on "source" and "name").

Then reports:
- ingest: total time and points/s of the `upsert` calls, and end to end with data generation;
- memory: peak RSS (getrusage) and current RSS (/proc/self/status) after ingest;
- disk: the shard folder's size (allocated blocks and apparent size), per subfolder;
- exact top-`limit` latency through `EmbeddedStore.search_batch(..., exact=True)` for `--queries`
  queries near cluster centres: the first query after ingest, warm median/p95 with and without
  payload, all queries as one `search_batch` call, the engine's share versus the conversion of
  its results to `Hit`s, and the first query after reopening the store;
- a brute-force comparison: numpy matmul + argpartition over the same vectors, read from a raw
  float32 file written during generation and opened as a memmap (skipped, with the reason
  printed, when available memory could not hold it), with the overlap of the two top-`limit` sets.

The store lives in a fresh temporary folder under /tmp unless --dir is given (it must be absent
or empty); either way it is removed at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from marsbench.datasets.coords import tile_name
from marsbench.datasets.geo import record_key, tile_payload
from marsbench.store import CollectionSpec, EmbeddedStore, PayloadIndex, Point, point_id
from marsbench.store.edge import _hit  # only to split engine time from Hit conversion

COLLECTION = "bench__fullscale__geo"
VECTOR = "image"
GRID_DEG = 0.2
GRID_COLS = 1800  # 360 degrees of longitude
LAT_START = -80.0
GRID_ROWS = 850  # up to latitude 89.8: room for 1.53 million tiles
MOSAIC_DEG = 4  # a source mosaic covers 4 x 4 degrees, as the Murray Lab CTX mosaic tiles do
PROGRESS_STEPS = 20
MATMUL_CHUNK_ROWS = 65_536
GIB = 1024**3


def main() -> None:
    args = _parse_args()
    if args.points > GRID_COLS * GRID_ROWS:
        sys.exit(f"--points {args.points} exceeds the grid's {GRID_COLS * GRID_ROWS} tiles")
    if args.dir is not None:
        root = args.dir
        if root.exists() and any(root.iterdir()):
            sys.exit(f"--dir {root} exists and is not empty; give an absent or empty folder")
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="marsbench-fullscale-", dir="/tmp"))
    try:
        results = _run(args, root)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=1_400_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--limit", type=int, default=20_000)
    parser.add_argument("--clusters", type=int, default=4096, help="number of cluster centres")
    parser.add_argument("--dir", type=Path, default=None, help="store folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the store folder at the end")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--no-brute-force", action="store_true", help="skip the numpy comparison")
    return parser.parse_args()


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ClusteredVectors:
    """Unit vectors drawn around fixed cluster centres; any batch can be drawn on its own.

    Centres share a common direction (as real image embeddings do: unrelated images still score
    about 0.1), cluster sizes are log-normal, and each cluster has its own spread, so a point's
    cosine to its centre lies between about 0.55 and 0.85.
    """

    centres: np.ndarray  # (clusters, dim) float32, unit rows
    spread: np.ndarray  # (clusters,) float32, noise norm per cluster
    cdf: np.ndarray  # (clusters,) float64, cumulative cluster weights
    seed: int

    @classmethod
    def create(cls, clusters: int, dim: int, seed: int) -> ClusteredVectors:
        rng = np.random.default_rng([seed, 0])
        common = _normalise(rng.standard_normal(dim, dtype=np.float32))
        own = rng.standard_normal((clusters, dim), dtype=np.float32) / np.float32(math.sqrt(dim))
        centres = _normalise(own + np.float32(0.35) * common)
        spread = rng.uniform(0.6, 1.5, clusters).astype(np.float32)
        weights = rng.lognormal(0.0, 1.0, clusters)
        cdf = np.cumsum(weights / weights.sum())
        cdf[-1] = 1.0
        return cls(centres, spread, cdf, seed)

    def batch(self, first: int, n: int) -> np.ndarray:
        """Points first .. first + n - 1, (n, dim) float32 unit rows; the same for the same arguments."""
        rng = np.random.default_rng([self.seed, 1, first])
        labels = np.searchsorted(self.cdf, rng.random(n), side="right")
        labels = np.minimum(labels, len(self.cdf) - 1)
        dim = self.centres.shape[1]
        noise = rng.standard_normal((n, dim), dtype=np.float32)
        noise *= (self.spread[labels] / np.float32(math.sqrt(dim)))[:, None]
        return _normalise(self.centres[labels] + noise)

    def queries(self, n: int) -> np.ndarray:
        """Queries near the centres of n distinct clusters (cosine about 0.95 to the centre)."""
        rng = np.random.default_rng([self.seed, 2])
        chosen = rng.choice(len(self.centres), size=n, replace=False)
        dim = self.centres.shape[1]
        noise = rng.standard_normal((n, dim), dtype=np.float32) * np.float32(0.3 / math.sqrt(dim))
        return _normalise(self.centres[chosen] + noise)


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def tile_of(i: int) -> tuple[str, str, dict[str, Any]]:
    """(point id, record key, payload) of the i-th tile of the 0.2-degree grid."""
    row, col = divmod(i, GRID_COLS)
    lon = round(-180.0 + GRID_DEG * col, 1)
    lat = round(LAT_START + GRID_DEG * row, 1)
    mosaic_lon = MOSAIC_DEG * math.floor(lon / MOSAIC_DEG)
    mosaic_lat = MOSAIC_DEG * math.floor(lat / MOSAIC_DEG)
    source = f"MurrayLab_CTX_V01_E{mosaic_lon}_N{mosaic_lat}"
    name = tile_name(lon, lat)
    key = record_key(source, name)
    return point_id(key), key, tile_payload(name, source, f"{source}/000000.tar", lon, lat)


# ----------------------------------------------------------------------------- measurements


def _proc_status() -> dict[str, float]:
    """Memory of this process in GiB: RSS from /proc/self/status, PSS from smaps_rollup, the
    getrusage peak, and the machine's MemAvailable.

    RSS counts a page once per mapping: qdrant-edge maps its vector files twice, so after the
    first search RSS shows the vectors twice while PSS (and MemAvailable) show them once."""
    values: dict[str, float] = {}
    for source, wanted in (
        ("/proc/self/status", {"VmRSS", "RssAnon", "RssFile", "VmHWM"}),
        ("/proc/self/smaps_rollup", {"Pss", "Pss_Anon", "Pss_File"}),
    ):
        try:
            with Path(source).open() as f:
                for line in f:
                    key, _, rest = line.partition(":")
                    if key in wanted:
                        values[key] = int(rest.split()[0]) * 1024 / GIB
        except OSError:
            pass
    values["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
    values["MemAvailable"] = _mem_available_gib()
    return values


def _mem_available_gib() -> float:
    with Path("/proc/meminfo").open() as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / GIB
    return float("nan")


def _disk_usage(path: Path) -> dict[str, dict[str, float]]:
    """Allocated and apparent bytes (in GiB) under `path`, in total and per direct child."""
    out: dict[str, dict[str, float]] = {}
    total_alloc = total_size = 0
    for child in sorted(path.iterdir()):
        alloc = size = 0
        for entry in [child, *child.rglob("*")] if child.is_dir() else [child]:
            st = entry.lstat()
            alloc += st.st_blocks * 512
            size += st.st_size if entry.is_file() else 0
        out[child.name] = {"allocated_gib": alloc / GIB, "apparent_gib": size / GIB}
        total_alloc += alloc
        total_size += size
    out["total"] = {"allocated_gib": total_alloc / GIB, "apparent_gib": total_size / GIB}
    return out


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _stats(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {
        "n": len(ms),
        "median_ms": float(np.median(ms)),
        "p95_ms": float(np.percentile(ms, 95)),
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
    }


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def _say(text: str) -> None:
    print(text, flush=True)


# ----------------------------------------------------------------------------- the run


def _run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    raw_gib = args.points * args.dim * 4 / GIB
    free_gib = shutil.disk_usage(root).free / GIB
    results: dict[str, Any] = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": _cpu_model(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "qdrant_edge": _version("qdrant-edge-py"),
            "mem_total_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB,
            "mem_available_gib_at_start": _mem_available_gib(),
            "disk_free_gib_at_start": free_gib,
        },
        "load_average": {"start": _load()},
        "store_dir": str(root),
    }
    _say(f"store folder: {root}")
    _say(
        f"{args.points:,} x {args.dim}-d float32 = {raw_gib:.2f} GiB of raw vectors; "
        f"{free_gib:.1f} GiB free on disk, {results['machine']['mem_available_gib_at_start']:.1f} GiB "
        f"memory available; load average {results['load_average']['start']}"
    )
    if free_gib < 3 * raw_gib:
        sys.exit(f"need about {3 * raw_gib:.1f} GiB of disk (shard, WAL, raw copy), {free_gib:.1f} free")

    data = ClusteredVectors.create(args.clusters, args.dim, args.seed)
    queries = data.queries(args.queries)
    raw_path = root / "vectors.f32"  # the brute-force copy, outside the store's folder
    spec = CollectionSpec(
        COLLECTION,
        {VECTOR: args.dim},
        {"location": PayloadIndex.GEO, "source": PayloadIndex.KEYWORD, "name": PayloadIndex.KEYWORD},
    )
    store_root = root / "store"
    store = EmbeddedStore(store_root)
    try:
        store.ensure_collection(spec)
        results["ingest"] = _ingest(store, data, args, raw_path)
        results["load_average"]["after_ingest"] = _load()
        results["memory_after_ingest_gib"] = _proc_status()
        results["disk_after_ingest_gib"] = _disk_usage(store_root / "collections" / COLLECTION / "shard")
        results["count"] = store.count(COLLECTION)
        results["shard_info"] = _shard_info(store)
        _print_ingest(results)
        results["search"], engine_hits = _searches(store, queries, args)
        results["memory_after_search_gib"] = _proc_status()
        results["load_average"]["after_search"] = _load()
    finally:
        store.close()
    results["reopen"] = _reopen(store_root, queries, args)
    results["disk_after_reopen_gib"] = _disk_usage(store_root / "collections" / COLLECTION / "shard")
    results["brute_force"] = _brute_force(raw_path, args, queries, engine_hits, results["search"])
    results["load_average"]["end"] = _load()
    _print_summary(results)
    return results


class _TimedShard:
    """Stands in for an open `EdgeShard` and times its `update` and `flush` calls (diagnostic only):
    `EmbeddedStore.upsert` runs unchanged, and its time splits into converting the points, the
    engine's update, and the flush that makes the batch durable."""

    def __init__(self, shard: qe.EdgeShard) -> None:
        self.shard = shard
        self.update_s: list[float] = []
        self.flush_s: list[float] = []

    def update(self, operation: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.shard.update(operation)
        finally:
            self.update_s.append(time.perf_counter() - start)

    def flush(self) -> Any:
        start = time.perf_counter()
        try:
            return self.shard.flush()
        finally:
            self.flush_s.append(time.perf_counter() - start)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.shard, name)


def _ingest(
    store: EmbeddedStore, data: ClusteredVectors, args: argparse.Namespace, raw_path: Path
) -> dict[str, Any]:
    entry = store._entry(COLLECTION)
    timed = _TimedShard(entry.shard)
    entry.shard = timed  # type: ignore[assignment]
    try:
        out = _ingest_batches(store, data, args, raw_path)
    finally:
        entry.shard = timed.shard
    batches = out["batches"]
    out["engine_update_s"] = sum(timed.update_s)
    out["flush_s"] = sum(timed.flush_s)
    out["to_edge_points_s"] = out["upsert_s"] - out["engine_update_s"] - out["flush_s"]
    out["ms_per_batch"] = {
        "upsert": 1000 * out["upsert_s"] / batches,
        "to_edge_points": 1000 * out["to_edge_points_s"] / batches,
        "engine_update": _stats(timed.update_s),
        "flush": _stats(timed.flush_s),
    }
    return out


def _ingest_batches(
    store: EmbeddedStore, data: ClusteredVectors, args: argparse.Namespace, raw_path: Path
) -> dict[str, Any]:
    gen_s = build_s = upsert_s = raw_s = 0.0
    progress = []
    step = max(args.points // PROGRESS_STEPS, args.batch)
    next_report = step
    start = time.perf_counter()
    last_t, last_upsert, last_n = start, 0.0, 0
    with raw_path.open("wb") as raw:
        for first in range(0, args.points, args.batch):
            n = min(args.batch, args.points - first)
            t0 = time.perf_counter()
            vectors = data.batch(first, n)
            t1 = time.perf_counter()
            points = []
            for j in range(n):
                pid, _, payload = tile_of(first + j)
                points.append(Point(pid, {VECTOR: vectors[j]}, payload))
            t2 = time.perf_counter()
            store.upsert(COLLECTION, points)
            t3 = time.perf_counter()
            raw.write(vectors.tobytes())
            t4 = time.perf_counter()
            gen_s += t1 - t0
            build_s += t2 - t1
            upsert_s += t3 - t2
            raw_s += t4 - t3
            done = first + n
            if done >= next_report or done == args.points:
                now = time.perf_counter()
                mem = _proc_status()
                row = {
                    "points": done,
                    "elapsed_s": now - start,
                    "upsert_s": upsert_s,
                    "window_upsert_points_per_s": (done - last_n) / (upsert_s - last_upsert),
                    "window_wall_points_per_s": (done - last_n) / (now - last_t),
                    "rss_gib": mem["VmRSS"],
                    "rss_anon_gib": mem["RssAnon"],
                    "load": _load()[0],
                }
                progress.append(row)
                eta = (args.points - done) / max(row["window_wall_points_per_s"], 1e-9)
                _say(
                    f"  {done:>9,} points  {row['elapsed_s']:7.1f} s  (eta {eta / 60:5.1f} min)  "
                    f"upsert {row['window_upsert_points_per_s']:7,.0f} pts/s (this window)  "
                    f"RSS {row['rss_gib']:.2f} GiB (anon {row['rss_anon_gib']:.2f})  load {row['load']}"
                )
                last_t, last_upsert, last_n = now, upsert_s, done
                next_report += step
    total_s = time.perf_counter() - start
    return {
        "points": args.points,
        "batches": math.ceil(args.points / args.batch),
        "upsert_s": upsert_s,
        "upsert_points_per_s": args.points / upsert_s,
        "upsert_ms_per_batch": 1000 * upsert_s / math.ceil(args.points / args.batch),
        "generate_vectors_s": gen_s,
        "build_points_s": build_s,
        "write_raw_copy_s": raw_s,
        "wall_s": total_s,
        "end_to_end_points_per_s": args.points / (total_s - raw_s),
        "progress": progress,
    }


def _shard_info(store: EmbeddedStore) -> dict[str, Any]:
    with store._shard(COLLECTION) as entry:  # diagnostic only
        info = entry.shard.info()
    out: dict[str, Any] = {}
    for attr in ("segments_count", "points_count", "indexed_vectors_count"):
        if hasattr(info, attr):
            out[attr] = getattr(info, attr)
    out["payload_schema"] = sorted(info.payload_schema)
    return out


def _searches(
    store: EmbeddedStore, queries: np.ndarray, args: argparse.Namespace
) -> tuple[dict[str, Any], list[tuple[list[str], np.ndarray]]]:
    limit = args.limit
    nq = len(queries)

    def one(i: int, with_payload: bool) -> list[Any]:
        return store.search_batch(
            COLLECTION, queries[i : i + 1], using=VECTOR, limit=limit, exact=True, with_payload=with_payload
        )[0]

    out: dict[str, Any] = {"limit": limit, "queries": nq}
    first_s, first_hits = _timed(lambda: one(0, True))
    out["first_query_after_ingest_with_payload_ms"] = 1000 * first_s
    out["hits_per_query"] = len(first_hits)
    out["example_payload"] = first_hits[0].payload
    out["top_score_range"] = [first_hits[-1].score, first_hits[0].score]
    _say(f"first query after ingest (payload): {1000 * first_s:,.0f} ms, {len(first_hits):,} hits")

    # Interleaved, so a change in the machine's load hits both variants alike.
    no_payload, with_payload, engine_hits = [], [], []
    for i in range(nq):
        seconds, hits = _timed(lambda i=i: one(i, False))
        no_payload.append(seconds)
        engine_hits.append(([h.id for h in hits], np.array([h.score for h in hits], dtype=np.float32)))
        with_payload.append(_timed(lambda i=i: one(i, True))[0])
    out["warm_no_payload"] = _stats(no_payload)
    out["warm_with_payload"] = _stats(with_payload)
    _say(f"warm, no payload:   {_fmt(out['warm_no_payload'])}")
    _say(f"warm, with payload: {_fmt(out['warm_with_payload'])}")

    for with_payload in (False, True):
        key = f"batch_{'with' if with_payload else 'no'}_payload_ms"
        seconds, hits = _timed(
            lambda w=with_payload: store.search_batch(
                COLLECTION, queries, using=VECTOR, limit=limit, exact=True, with_payload=w
            )
        )
        assert len(hits) == nq and all(len(h) == len(first_hits) for h in hits)
        out[key] = 1000 * seconds
        _say(f"one search_batch of {nq} queries, payload={with_payload}: {1000 * seconds:,.0f} ms")

    out["split"] = _split(store, queries, limit)
    return out, engine_hits


def _split(store: EmbeddedStore, queries: np.ndarray, limit: int) -> dict[str, float]:
    """Where a single query's time goes: the engine's `query_batch` versus turning its
    `ScoredPoint`s into `Hit`s, for each query once without and once with payload (interleaved).

    Rebuilds `EmbeddedStore.search_batch`'s request by hand (diagnostic only)."""

    def request(row: np.ndarray, with_payload: bool) -> qe.QueryBatchRequest:
        return qe.QueryBatchRequest(
            [
                qe.QueryRequest(
                    limit=limit,
                    query=qe.Query.Nearest(row.tolist(), using=VECTOR),
                    filter=None,
                    params=qe.SearchParams(exact=True),
                    with_payload=with_payload,
                    with_vector=False,
                )
            ]
        )

    times: dict[str, list[float]] = {}
    for row in queries:
        for with_payload in (False, True):
            tag = "with_payload" if with_payload else "no_payload"
            req = request(row, with_payload)
            with store._shard(COLLECTION) as entry:
                seconds, results = _timed(lambda e=entry, r=req: e.shard.query_batch(r))
            times.setdefault(f"engine_{tag}", []).append(seconds)
            convert = _timed(lambda res=results: [[_hit(p) for p in pts] for pts in res])[0]
            times.setdefault(f"to_hits_{tag}", []).append(convert)
    out: dict[str, float] = {"n": len(queries)}
    for key, values in times.items():
        out[f"{key}_ms"] = 1000 * float(np.median(values))
    for tag in ("no_payload", "with_payload"):
        out[f"to_hits_{tag}_us_per_hit"] = 1000 * out[f"to_hits_{tag}_ms"] / limit
        _say(
            f"split, {tag} (median of {len(queries)}): engine query_batch {out[f'engine_{tag}_ms']:,.0f} ms, "
            f"ScoredPoint -> Hit {out[f'to_hits_{tag}_ms']:,.0f} ms "
            f"({out[f'to_hits_{tag}_us_per_hit']:.2f} us per hit)"
        )
    return out


def _reopen(store_root: Path, queries: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    """Open the store afresh (as a restarted service would) and time the first and next queries."""
    before = _proc_status()
    start = time.perf_counter()
    with EmbeddedStore(store_root) as store:
        count = store.count(COLLECTION)
        open_s = time.perf_counter() - start
        first_s, _ = _timed(
            lambda: store.search_batch(COLLECTION, queries[:1], using=VECTOR, limit=args.limit, exact=True)
        )
        second_s, _ = _timed(
            lambda: store.search_batch(COLLECTION, queries[1:2], using=VECTOR, limit=args.limit, exact=True)
        )
        after = _proc_status()
    out = {
        "open_and_count_s": open_s,
        "count": count,
        "first_query_with_payload_ms": 1000 * first_s,
        "second_query_with_payload_ms": 1000 * second_s,
        "rss_before_open_gib": before["VmRSS"],
        "rss_after_open_and_query_gib": after["VmRSS"],
        "memory_after_reopen_gib": after,
    }
    _say(
        f"reopen: open + count {open_s:.2f} s ({count:,} points); first query {1000 * first_s:,.0f} ms, "
        f"second {1000 * second_s:,.0f} ms (page cache not dropped: other users share the machine)"
    )
    return out


def _brute_force(
    raw_path: Path,
    args: argparse.Namespace,
    queries: np.ndarray,
    engine_hits: list[tuple[list[str], np.ndarray]],
    search: dict[str, Any],
) -> dict[str, Any]:
    if args.no_brute_force:
        return {"skipped": "--no-brute-force"}
    raw_gib = raw_path.stat().st_size / GIB
    nq = len(queries)
    # The file must stay in the page cache (else every scan reads the disk), plus the score
    # matrix of a batch, one chunk's products and 1 GiB to spare.
    need_gib = raw_gib + (args.points * nq * 4 + MATMUL_CHUNK_ROWS * nq * 4) / GIB + 1.0
    available = _mem_available_gib()
    if available < need_gib:
        reason = (
            f"needs about {need_gib:.1f} GiB available memory (the {raw_gib:.1f} GiB raw copy cached "
            f"plus scores), only {available:.1f} GiB is"
        )
        _say(f"brute force skipped: {reason}")
        return {"skipped": reason}
    memmap = np.memmap(raw_path, dtype=np.float32, mode="r", shape=(args.points, args.dim))
    k = args.limit

    def scores_of(q: np.ndarray) -> np.ndarray:  # q: (nq, dim) -> (n, nq)
        out = np.empty((args.points, len(q)), dtype=np.float32)
        for first in range(0, args.points, MATMUL_CHUNK_ROWS):
            block = memmap[first : first + MATMUL_CHUNK_ROWS]
            np.matmul(block, q.T, out=out[first : first + len(block)])
        return out

    def top_k(column: np.ndarray) -> np.ndarray:
        part = np.argpartition(-column, k - 1)[:k]
        return part[np.argsort(-column[part], kind="stable")]

    warm_s, _ = _timed(lambda: scores_of(queries[:1]))  # pages in the memmap
    singles, tops = [], []
    for i in range(nq):
        seconds, top = _timed(lambda i=i: top_k(scores_of(queries[i : i + 1])[:, 0]))
        singles.append(seconds)
        tops.append(top)
    batch_s, _ = _timed(lambda: [top_k(c) for c in scores_of(queries).T])

    overlaps, score_diffs = [], []
    for (ids, engine_scores), top, q in zip(engine_hits, tops, queries, strict=True):
        mine = {tile_of(int(i))[0] for i in top}
        overlaps.append(len(mine & set(ids)) / k)
        exact = np.asarray(memmap[np.sort(top)] @ q, dtype=np.float32)
        score_diffs.append(float(np.max(np.abs(np.sort(exact)[::-1] - engine_scores))))
    single = _stats(singles)
    out = {
        "first_scan_ms": 1000 * warm_s,
        "single": single,
        "batch_ms": 1000 * batch_s,
        "min_overlap_with_engine": min(overlaps),
        "max_abs_score_diff_sorted": max(score_diffs),
        "engine_over_numpy_single_no_payload": search["warm_no_payload"]["median_ms"] / single["median_ms"],
        "engine_over_numpy_single_with_payload": search["warm_with_payload"]["median_ms"]
        / single["median_ms"],
        "engine_over_numpy_batch_no_payload": search["batch_no_payload_ms"] / (1000 * batch_s),
        "engine_over_numpy_batch_with_payload": search["batch_with_payload_ms"] / (1000 * batch_s),
        "rss_after_gib": _proc_status()["VmRSS"],
    }
    _say(
        f"numpy brute force: single {_fmt(single)}; batch of {nq}: {1000 * batch_s:,.0f} ms; "
        f"overlap with the engine's top-{k}: min {min(overlaps):.5f}"
    )
    return out


# ----------------------------------------------------------------------------- output


def _fmt(s: dict[str, float]) -> str:
    return (
        f"median {s['median_ms']:,.0f} ms, p95 {s['p95_ms']:,.0f} ms "
        f"(min {s['min_ms']:,.0f}, max {s['max_ms']:,.0f}; n={s['n']})"
    )


def _rss(m: dict[str, float]) -> str:
    return f"{m['VmRSS']:.2f} GiB (anon {m['RssAnon']:.2f}, file {m['RssFile']:.2f})"


def _pss(m: dict[str, float]) -> str:
    if "Pss" not in m:
        return "n/a"
    return (
        f"{m['Pss']:.2f} GiB (anon {m['Pss_Anon']:.2f}, file {m['Pss_File']:.2f}); "
        f"machine MemAvailable {m['MemAvailable']:.1f} GiB"
    )


def _print_ingest(r: dict[str, Any]) -> None:
    ing = r["ingest"]
    _say(
        f"ingest: {ing['points']:,} points in {ing['upsert_s']:,.1f} s of upsert "
        f"({ing['upsert_points_per_s']:,.0f} points/s, {ing['upsert_ms_per_batch']:.1f} ms per batch); "
        f"wall {ing['wall_s']:,.1f} s"
    )


def _print_summary(r: dict[str, Any]) -> None:
    ing, mem, disk = r["ingest"], r["memory_after_ingest_gib"], r["disk_after_ingest_gib"]
    s, bf, ro = r["search"], r["brute_force"], r["reopen"]
    a = r["args"]
    rows: list[tuple[str, str]] = [
        ("points x dim", f"{a['points']:,} x {a['dim']}  (count {r['count']:,})"),
        ("load average (1/5/15 min)", " | ".join(f"{k}: {v}" for k, v in r["load_average"].items())),
        ("ingest: upsert time", f"{ing['upsert_s']:,.1f} s"),
        ("ingest: upsert rate", f"{ing['upsert_points_per_s']:,.0f} points/s"),
        ("ingest: per upsert call", f"{ing['upsert_ms_per_batch']:.1f} ms / {a['batch']} points"),
        (
            "  of which",
            f"to qe.Point {ing['ms_per_batch']['to_edge_points']:.1f} ms, engine update median "
            f"{ing['ms_per_batch']['engine_update']['median_ms']:.1f} ms, flush median "
            f"{ing['ms_per_batch']['flush']['median_ms']:.1f} ms "
            f"(p95 {ing['ms_per_batch']['flush']['p95_ms']:.1f})",
        ),
        (
            "  totals",
            f"to qe.Point {ing['to_edge_points_s']:,.1f} s, update {ing['engine_update_s']:,.1f} s, "
            f"flush {ing['flush_s']:,.1f} s",
        ),
        (
            "ingest: + generate/build",
            f"{ing['generate_vectors_s']:,.1f} s vectors + {ing['build_points_s']:,.1f} s Points "
            f"-> {ing['end_to_end_points_per_s']:,.0f} points/s end to end",
        ),
        ("RSS after ingest", _rss(mem)),
        ("PSS after ingest", _pss(mem)),
        ("peak RSS after ingest", f"{mem['ru_maxrss']:.2f} GiB (ru_maxrss)"),
        ("RSS after searches", _rss(r["memory_after_search_gib"])),
        ("PSS after searches", _pss(r["memory_after_search_gib"])),
        ("RSS after reopen + 2 queries", _rss(ro["memory_after_reopen_gib"])),
        ("PSS after reopen + 2 queries", _pss(ro["memory_after_reopen_gib"])),
        ("peak RSS at the end", f"{_proc_status()['ru_maxrss']:.2f} GiB (ru_maxrss)"),
        (
            "shard on disk",
            f"{disk['total']['allocated_gib']:.2f} GiB allocated "
            f"({disk['total']['apparent_gib']:.2f} apparent)",
        ),
        *(
            (f"  {name}", f"{v['allocated_gib']:.2f} GiB")
            for name, v in disk.items()
            if name != "total" and v["allocated_gib"] >= 0.005
        ),
        (
            "shard on disk after reopen",
            f"{r['disk_after_reopen_gib']['total']['allocated_gib']:.2f} GiB allocated",
        ),
        (
            f"first top-{s['limit']:,} after ingest",
            f"{s['first_query_after_ingest_with_payload_ms']:,.0f} ms",
        ),
        ("warm, no payload", _fmt(s["warm_no_payload"])),
        ("warm, with payload", _fmt(s["warm_with_payload"])),
        (f"batch of {s['queries']}, no payload", f"{s['batch_no_payload_ms']:,.0f} ms"),
        (f"batch of {s['queries']}, with payload", f"{s['batch_with_payload_ms']:,.0f} ms"),
        (
            f"split (median of {s['split']['n']}), no payload",
            f"engine {s['split']['engine_no_payload_ms']:,.0f} ms + to Hit "
            f"{s['split']['to_hits_no_payload_ms']:,.0f} ms "
            f"({s['split']['to_hits_no_payload_us_per_hit']:.2f} us/hit)",
        ),
        (
            f"split (median of {s['split']['n']}), with payload",
            f"engine {s['split']['engine_with_payload_ms']:,.0f} ms + to Hit "
            f"{s['split']['to_hits_with_payload_ms']:,.0f} ms "
            f"({s['split']['to_hits_with_payload_us_per_hit']:.2f} us/hit)",
        ),
        ("reopen: open + count", f"{ro['open_and_count_s']:.2f} s"),
        (
            "reopen: first / second query",
            f"{ro['first_query_with_payload_ms']:,.0f} / {ro['second_query_with_payload_ms']:,.0f} ms",
        ),
    ]
    if "skipped" in bf:
        rows.append(("numpy brute force", f"skipped: {bf['skipped']}"))
    else:
        rows += [
            ("numpy: single query", _fmt(bf["single"])),
            (f"numpy: batch of {s['queries']}", f"{bf['batch_ms']:,.0f} ms"),
            (
                "engine / numpy, single",
                f"{bf['engine_over_numpy_single_no_payload']:.1f}x (no payload), "
                f"{bf['engine_over_numpy_single_with_payload']:.1f}x (payload)",
            ),
            (
                "engine / numpy, batch",
                f"{bf['engine_over_numpy_batch_no_payload']:.1f}x (no payload), "
                f"{bf['engine_over_numpy_batch_with_payload']:.1f}x (payload)",
            ),
            ("top-k overlap engine vs numpy", f"min {bf['min_overlap_with_engine']:.5f}"),
            ("max |score diff| (sorted)", f"{bf['max_abs_score_diff_sorted']:.2e}"),
        ]
    width = max(len(k) for k, _ in rows)
    _say("\n" + "=" * (width + 60))
    for key, value in rows:
        _say(f"{key:<{width}}  {value}")
    _say("=" * (width + 60))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    main()

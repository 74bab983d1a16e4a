"""Geo-localization on a live 1.4-million-tile index: the warm index, the engine, the reference's way.

    python benchmarks/geo_live_index.py [--dir /tmp/marsbench-geo-1p4m] [--points 1400000] [--dim 1024]
                                        [--queries 15] [--limit 20000] [--gt 1000] [--repeats 2]
                                        [--grid-repeats 3] [--ref-queries 15] [--ref-cached 3]
                                        [--json PATH]

The store is the one `benchmarks/store_full_scale.py` builds (same synthetic clustered vectors,
same geo payloads, same collection): `--dir` holds it under `store/` with the raw float32 copy
`vectors.f32` beside it. When `--dir/store` exists it is reused (its point count must equal
`--points`); otherwise it is ingested first with store_full_scale's own functions (about 5 to 20
minutes at 1.4 million, depending on the machine's load). Either way it is kept at the end, so a
rerun skips ingest (`store_full_scale.py --keep --dir DIR --no-brute-force` builds the same).

Then, with MemAvailable (/proc/meminfo) checked and printed before each part:

1. warm index: `WarmIndexCache.get`, the evaluator's code path (its build time and memory);
2. 15 queries near 15 cluster centres (store_full_scale's `queries`), read as 5 landforms x 3
   query modes, each landform with a synthetic catalogue of `--gt` points (a fifth of them near
   tiles that its three queries rank in their top `--limit`, the rest anywhere on the grid);
3. (a) warm path: `WarmIndex.ranked_lonlat` top-`limit` + the three curves a run computes
   (`parity`, `exact`, `exact_great_circle`), and (b) engine path: `EmbeddedStore.search_batch`
   (exact, with payload) + `ranked_locations` + the same curves, interleaved per query in ABBA
   order, `--repeats` rounds; (a) and (b) must give the same ranking and identical curves (tie
   differences are analysed and reported when they occur);
4. the grid: all 15 queries of (a) back to back (`--grid-repeats` times), of (b) once, and, as an
   estimate of what a batched warm API would give, (a) with the 15 matrix-vector products done as
   one matrix product;
5. where (a)'s time goes: matrix-vector product, argpartition, the tie-ordered sort, each curve;
6. (c) the reference's way of working, per query run: load the saved features (`np.load` of a
   float32 `features.npy`, written once from the raw copy, with the tile coordinates beside it),
   dropped from the page cache first (posix_fadvise DONTNEED on that file only; the cached
   fraction is measured with `fincore` before each load), a flat exact top-`limit` in numpy,
   and the reference's per-k KD-tree evaluator (`geo_metrics.reference_curve`); `--ref-cached`
   more runs with the file left in the page cache. The warm index is freed first when memory
   would not hold both.

Prints a table and, with --json, writes every number.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from geo_metrics import reference_curve
from store_full_scale import (
    COLLECTION,
    GRID_COLS,
    VECTOR,
    ClusteredVectors,
    _cpu_model,
    _ingest_batches,
    _load,
    _mem_available_gib,
    _proc_status,
    _stats,
    _version,
    tile_of,
)

from marsbench.evaluator.core.tasks.geo import ranked_locations
from marsbench.evaluator.core.warm_index import SCORE_DECIMALS, WarmIndex, WarmIndexCache
from marsbench.evaluator.metrics.geo import GeoCurve, exact_curve, parity_curve
from marsbench.store import EmbeddedStore
from marsbench.tasks.geo import GEO

GIB = 1024**3
LANDFORMS = ("crater", "dune", "gully", "channel", "cone")  # labels only: the data is synthetic
MODES = ("text", "image", "hybrid")
RADIUS_DEG = 0.5
GRID_POINTS = 100  # the reference's k grid
NEAR_FRACTION = 0.2  # of each catalogue: points near tiles its landform's queries rank high
JITTER_DEG = 0.3  # within the 0.5-degree radius, so those points are coverable
COPY_CHUNK_ROWS = 65_536
MEMORY_MARGIN_GIB = 2.0  # kept free on top of what a part needs, so nothing swaps or is OOM-killed
WARM_BUDGET_GIB = 8.0  # the evaluator's default `warm_index_gb`


def main() -> None:
    args = _parse_args()
    if len(LANDFORMS) * len(MODES) != args.queries:
        sys.exit(f"--queries must be {len(LANDFORMS) * len(MODES)} (5 landforms x 3 modes)")
    args.dir.mkdir(parents=True, exist_ok=True)
    results = _run(args)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=_jsonable) + "\n")
        _say(f"wrote {args.json}")
    _say(f"kept {args.dir} (a rerun reuses it)")


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, default=Path("/tmp/marsbench-geo-1p4m"))
    parser.add_argument("--points", type=int, default=1_400_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=256, help="ingest batch (only when building)")
    parser.add_argument("--clusters", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--limit", type=int, default=20_000)
    parser.add_argument("--gt", type=int, default=1_000, help="catalogue points per landform")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds of (a) and (b)")
    parser.add_argument("--grid-repeats", type=int, default=3, help="back-to-back runs of (a)'s grid")
    parser.add_argument("--ref-queries", type=int, default=15, help="(c) runs with the file dropped")
    parser.add_argument("--ref-cached", type=int, default=3, help="(c) runs with the file cached")
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args()


# ----------------------------------------------------------------------------- the run


def _run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": _cpu_model(),
            "numpy": np.__version__,
            "qdrant_edge": _version("qdrant-edge-py"),
            "blas_threads": _blas_threads(),
            "mem_total_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB,
        },
        "load_average": {"start": _load()},
        "mem_available_gib": {},
    }
    data = ClusteredVectors.create(args.clusters, args.dim, args.seed)
    queries = data.queries(args.queries)
    store_root = args.dir / "store"
    results["ingest"] = _ensure_store(args, data, store_root)
    results["load_average"]["after_ingest"] = _load()
    store = EmbeddedStore(store_root)
    try:
        count = store.count(COLLECTION)
        if count != args.points:
            sys.exit(f"{store_root} holds {count:,} points, not --points {args.points:,}; use another --dir")
        _say(f"store {store_root}: {count:,} points; load average {_load()}")
        engine_first_s, _ = _timed(lambda: _engine_rank(store, queries[0], args.limit))
        results["engine_first_query_after_open_s"] = engine_first_s
        _say(f"first engine query after opening the store: {engine_first_s:.2f} s")

        _check_memory(results, "before warm build", args.points * args.dim * 4 / GIB)
        index, results["warm_build"] = _build_warm(store, args)

        catalogues = _catalogues(index, queries, args)
        results["catalogue_sizes"] = [len(c) for c in catalogues]
        gt_of = [catalogues[i // len(MODES)] for i in range(args.queries)]

        _check_memory(results, "before (a)/(b)", 1.0)
        results["interleaved"] = _interleaved(store, index, queries, gt_of, args)
        results["load_average"]["after_interleaved"] = _load()
        results["grid"] = _grid(store, index, queries, gt_of, args)
        results["split"] = _split(index, queries, gt_of, args)
        results["load_average"]["after_warm_parts"] = _load()

        features, lonlat_file = _ensure_features(args, index)
        need = args.points * args.dim * 4 / GIB
        if _mem_available_gib() < need + MEMORY_MARGIN_GIB:
            _say(f"freeing the warm index before (c): MemAvailable {_mem_available_gib():.1f} GiB")
            results["warm_freed_before_reference"] = True
            del index
            gc.collect()
        else:
            results["warm_freed_before_reference"] = False
        _check_memory(results, "before (c)", need)
        results["reference"] = _reference(features, lonlat_file, queries, gt_of, args)
    finally:
        store.close()
    results["load_average"]["end"] = _load()
    results["ratios"] = _ratios(results)
    _print_summary(results, args)
    return results


# ----------------------------------------------------------------------------- store and data


def _ensure_store(args: argparse.Namespace, data: ClusteredVectors, store_root: Path) -> dict[str, Any]:
    if (store_root / "collections" / COLLECTION).is_dir():
        _say(f"reusing the store under {store_root}")
        return {"reused": True}
    raw_gib = args.points * args.dim * 4 / GIB
    free_gib = shutil.disk_usage(args.dir).free / GIB
    if free_gib < 3.5 * raw_gib:  # shard, WAL, raw copy and features.npy
        sys.exit(f"need about {3.5 * raw_gib:.1f} GiB of disk, {free_gib:.1f} free")
    _say(f"ingesting {args.points:,} points into {store_root} (store_full_scale's generator and path)")
    with EmbeddedStore(store_root) as store:
        store.ensure_collection(GEO.collection_spec(COLLECTION, args.dim))
        out = _ingest_batches(store, data, args, args.dir / "vectors.f32")
    out.pop("progress", None)
    out["reused"] = False
    _say(f"ingest: {out['wall_s']:,.0f} s wall, {out['upsert_points_per_s']:,.0f} points/s of upsert")
    return out


def _build_warm(store: EmbeddedStore, args: argparse.Namespace) -> tuple[WarmIndex, dict[str, Any]]:
    before = _proc_status()
    cache = WarmIndexCache(int(WARM_BUDGET_GIB * GIB))
    seconds, index = _timed(lambda: cache.get(store, COLLECTION, using=VECTOR, dim=args.dim))
    if index is None:
        sys.exit(f"the warm index does not fit its {WARM_BUDGET_GIB} GiB budget")
    after = _proc_status()
    out = {
        "wall_s": seconds,
        "build_s": index.build_s,
        "nbytes_gib": index.nbytes / GIB,
        "rss_anon_delta_gib": after["RssAnon"] - before["RssAnon"],
        "pss_delta_gib": after.get("Pss", float("nan")) - before.get("Pss", float("nan")),
        "mem_available_before_gib": before["MemAvailable"],
        "mem_available_after_gib": after["MemAvailable"],
        "ru_maxrss_after_gib": after["ru_maxrss"],
    }
    _say(
        f"warm index: {index.count:,} rows, {out['nbytes_gib']:.2f} GiB, built in {seconds:.1f} s; "
        f"anon RSS +{out['rss_anon_delta_gib']:.2f} GiB; MemAvailable {before['MemAvailable']:.1f} -> "
        f"{after['MemAvailable']:.1f} GiB"
    )
    return index, out


def _catalogues(index: WarmIndex, queries: np.ndarray, args: argparse.Namespace) -> list[np.ndarray]:
    """Per landform, `--gt` catalogue points: NEAR_FRACTION of them jittered around tiles that its
    three queries rank in their top `limit` (so the curves have hits to find, as real catalogues
    do), the rest uniform over the grid's latitudes. These rankings also warm the numpy path."""
    rng = np.random.default_rng([args.seed, 3])
    out = []
    per_query = int(args.gt * NEAR_FRACTION) // len(MODES)
    for j in range(len(LANDFORMS)):
        near = []
        for i in range(j * len(MODES), (j + 1) * len(MODES)):
            ranked = index.ranked_lonlat(queries[i], args.limit)
            picks = ranked[rng.choice(len(ranked), size=per_query, replace=False)]
            near.append(picks + rng.uniform(-JITTER_DEG, JITTER_DEG, picks.shape))
        n_far = args.gt - per_query * len(MODES)
        far = np.column_stack([rng.uniform(-180.0, 180.0, n_far), rng.uniform(-80.0, 89.8, n_far)])
        gt = np.concatenate([*near, far])
        gt[:, 1] = np.clip(gt[:, 1], -90.0, 90.0)
        out.append(gt)
    return out


def _ensure_features(args: argparse.Namespace, index: WarmIndex | None) -> tuple[Path, Path]:
    """features.npy (float32, dataset order) and the tiles' (lon, lat) beside it, written once, as
    the reference saves its features; from the raw copy when there is one, else the warm index."""
    features = args.dir / "features.npy"
    lonlat_file = args.dir / "features_lonlat.npy"
    if features.is_file() and lonlat_file.is_file():
        return features, lonlat_file
    raw = args.dir / "vectors.f32"
    shape = (args.points, args.dim)
    started = time.perf_counter()
    tmp = features.with_suffix(".partial.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
    if raw.is_file() and raw.stat().st_size == args.points * args.dim * 4:
        source = np.memmap(raw, dtype=np.float32, mode="r", shape=shape)
        lonlat = _grid_lonlat(args.points)
    elif index is not None:
        source, lonlat = index.vectors, index.lonlat
    else:
        sys.exit("no raw copy and no warm index to write features.npy from")
    for first in range(0, args.points, COPY_CHUNK_ROWS):
        out[first : first + COPY_CHUNK_ROWS] = source[first : first + COPY_CHUNK_ROWS]
    out.flush()
    del out, source
    tmp.rename(features)
    np.save(lonlat_file, lonlat)
    _say(f"wrote {features} and {lonlat_file.name} in {time.perf_counter() - started:.1f} s")
    return features, lonlat_file


def _grid_lonlat(n: int) -> np.ndarray:
    """(lon, lat) of tiles 0..n-1 as store_full_scale's `tile_of` makes them, with its Python
    rounding (np.round can differ in the last bit), for the few distinct columns and rows."""
    lons = np.array([tile_of(c)[2]["location"]["lon"] for c in range(GRID_COLS)], dtype=np.float64)
    rows = range(0, n + GRID_COLS, GRID_COLS)
    lats = np.array([tile_of(r)[2]["location"]["lat"] for r in rows], dtype=np.float64)
    row, col = np.divmod(np.arange(n), GRID_COLS)
    return np.column_stack([lons[col], lats[row]])


# ----------------------------------------------------------------------------- the paths


def _curves(ranked: np.ndarray, gt: np.ndarray, limit: int) -> dict[str, GeoCurve]:
    # As evaluate_geo computes them.
    options = {"radius_deg": RADIUS_DEG, "max_k": limit}
    return {
        "parity": parity_curve(ranked, gt, **options),
        "exact": exact_curve(ranked, gt, **options),
        "exact_great_circle": exact_curve(ranked, gt, distance="great_circle", **options),
    }


def _warm_run(index: WarmIndex, q: np.ndarray, gt: np.ndarray, limit: int) -> tuple[np.ndarray, dict]:
    ranked = index.ranked_lonlat(q, limit)
    return ranked, _curves(ranked, gt, limit)


def _engine_rank(store: EmbeddedStore, q: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    hits = store.search_batch(COLLECTION, q[None, :], using=VECTOR, limit=limit, exact=True)[0]
    return ranked_locations(hits), np.array([h.score for h in hits], dtype=np.float64)


def _engine_run(store: EmbeddedStore, q: np.ndarray, gt: np.ndarray, limit: int) -> tuple[np.ndarray, dict]:
    ranked, _ = _engine_rank(store, q, limit)
    return ranked, _curves(ranked, gt, limit)


def _interleaved(
    store: EmbeddedStore,
    index: WarmIndex,
    queries: np.ndarray,
    gt_of: list[np.ndarray],
    args: argparse.Namespace,
) -> dict[str, Any]:
    warm_s: list[float] = []
    engine_s: list[float] = []
    comparisons = []
    for r in range(args.repeats):
        for i, q in enumerate(queries):
            # ABBA: which path goes first alternates by query and by round.
            first_warm = (i + r) % 2 == 0
            for path in ("warm", "engine") if first_warm else ("engine", "warm"):
                if path == "warm":
                    seconds, (w_ranked, w_curves) = _timed(
                        lambda q=q, i=i: _warm_run(index, q, gt_of[i], args.limit)
                    )
                    warm_s.append(seconds)
                else:
                    seconds, (e_ranked, e_curves) = _timed(
                        lambda q=q, i=i: _engine_run(store, q, gt_of[i], args.limit)
                    )
                    engine_s.append(seconds)
            if r == 0:
                comparisons.append(_compare(store, index, q, w_ranked, w_curves, e_ranked, e_curves, args))
        _say(
            f"round {r + 1}: warm median {np.median(warm_s[-len(queries) :]) * 1000:,.0f} ms, "
            f"engine median {np.median(engine_s[-len(queries) :]) * 1000:,.0f} ms"
        )
    out = {
        "warm": _stats(warm_s),
        "engine": _stats(engine_s),
        "warm_s": warm_s,
        "engine_s": engine_s,
        "comparisons": comparisons,
        "identical_rankings": sum(c["identical_ranking"] for c in comparisons),
        "identical_curves": sum(c["identical_curves"] for c in comparisons),
        "identical_best_and_auprc": sum(c["identical_best_and_auprc"] for c in comparisons),
        "differences_explained_by_engine_scores": sum(
            bool(c.get("engine_scores_explain_all")) for c in comparisons if not c["identical_ranking"]
        ),
        "differences_explained_by_engine_scores_up_to_exact_ties": sum(
            bool(c.get("engine_scores_explain_up_to_exact_ties"))
            for c in comparisons
            if not c["identical_ranking"]
        ),
    }
    _say(f"(a) warm   per query: {_fmt(out['warm'])}")
    _say(f"(b) engine per query: {_fmt(out['engine'])}")
    _say(
        f"identical rankings {out['identical_rankings']}/{len(comparisons)}, "
        f"identical curves {out['identical_curves']}/{len(comparisons)}, identical best and AUPRC "
        f"{out['identical_best_and_auprc']}/{len(comparisons)}; differing rankings reproduced exactly "
        f"from the engine's own scores: {out['differences_explained_by_engine_scores']}, up to exact "
        f"score ties: {out['differences_explained_by_engine_scores_up_to_exact_ties']}"
    )
    return out


def _compare(
    store: EmbeddedStore,
    index: WarmIndex,
    q: np.ndarray,
    w_ranked: np.ndarray,
    w_curves: dict[str, GeoCurve],
    e_ranked: np.ndarray,
    e_curves: dict[str, GeoCurve],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Same (lon, lat) order and the same curve numbers (compared with ==). When the order differs,
    why: the engine's float32 inner products are summed in another order than numpy's (BLAS), so a
    score can differ in its last bits and then round to another 6-decimal value or swap with a
    near-equal neighbour. Re-ranking (a)'s tiles with the engine's own scores under (a)'s rule
    tells whether that alone explains every difference."""
    same_ranking = w_ranked.shape == e_ranked.shape and bool(np.array_equal(w_ranked, e_ranked))
    same_curves = {n: _same_curve(w_curves[n], e_curves[n]) for n in w_curves}
    out: dict[str, Any] = {
        "identical_ranking": same_ranking,
        "identical_curves": all(same_curves.values()),
        "identical_curve_by_variant": same_curves,
        "identical_best_and_auprc": all(
            w_curves[n].best == e_curves[n].best and w_curves[n].auprc == e_curves[n].auprc for n in w_curves
        ),
    }
    if same_ranking:
        return out
    # Diagnostic only (outside the timings).
    hits = store.search_batch(COLLECTION, q[None, :], using=VECTOR, limit=args.limit, exact=True)[0]
    engine_score = {(h.payload["location"]["lon"], h.payload["location"]["lat"]): h.score for h in hits}
    scores = index.vectors @ np.asarray(q, dtype=np.float32)
    rows = np.argpartition(-scores, args.limit - 1)[: args.limit]
    keys = [tuple(p) for p in index.lonlat[rows].tolist()]
    same_set = set(keys) == set(engine_score)
    differ = np.flatnonzero(np.any(w_ranked != e_ranked, axis=1))
    out.update(
        {
            "positions_differing": len(differ),
            "first_differing_rank": int(differ[0]) + 1,
            "same_tile_set": same_set,
        }
    )
    if same_set:
        mine = scores[rows].astype(np.float64)
        theirs = np.array([engine_score[key] for key in keys], dtype=np.float64)
        rerank = np.lexsort((index.id_rank[rows], -theirs, -np.round(theirs, SCORE_DECIMALS)))
        out.update(
            {
                "tiles_with_other_raw_score": int(np.count_nonzero(mine != theirs)),
                "max_raw_score_diff": float(np.max(np.abs(mine - theirs))),
                "tiles_with_other_rounded_score": int(
                    np.count_nonzero(np.round(mine, SCORE_DECIMALS) != np.round(theirs, SCORE_DECIMALS))
                ),
                "engine_scores_explain_all": bool(np.array_equal(index.lonlat[rows[rerank]], e_ranked)),
                # What is left: tiles whose engine scores are exactly equal, which (a) orders by
                # point id and the engine by its own internal order.
                "engine_scores_explain_up_to_exact_ties": _same_within_groups(
                    index.lonlat[rows[rerank]], e_ranked, theirs[rerank]
                ),
                "exact_engine_score_ties": int(len(theirs) - len(np.unique(theirs))),
            }
        )
    for name in w_curves:
        a, b = w_curves[name], e_curves[name]
        if not same_curves[name]:
            out[f"{name}_diff"] = {
                "k_values_differing": int(
                    np.count_nonzero((a.precision != b.precision) | (a.recall != b.recall))
                ),
                "max_abs_f1_diff": float(np.max(np.abs(a.f1 - b.f1))),
                "best_equal": a.best == b.best,
                "auprc_diff": a.auprc - b.auprc,
            }
    return out


def _same_within_groups(a: np.ndarray, b: np.ndarray, keys: np.ndarray) -> bool:
    """True when a and b hold the same tiles within every run of equal keys (keys in a's order)."""
    bounds = np.flatnonzero(np.diff(keys)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(keys)], strict=True):
        if hi - lo == 1:
            if not np.array_equal(a[lo], b[lo]):
                return False
        elif {tuple(p) for p in a[lo:hi].tolist()} != {tuple(p) for p in b[lo:hi].tolist()}:
            return False
    return True


def _same_curve(a: GeoCurve, b: GeoCurve) -> bool:
    return (
        np.array_equal(a.k, b.k)
        and np.array_equal(a.precision, b.precision)
        and np.array_equal(a.recall, b.recall)
        and np.array_equal(a.f1, b.f1)
        and a.best == b.best
        and a.auprc == b.auprc
    )


def _grid(
    store: EmbeddedStore,
    index: WarmIndex,
    queries: np.ndarray,
    gt_of: list[np.ndarray],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """All 5 landforms x 3 modes back to back: (a) as the service runs them, (b) once, and (a) with
    one matrix product for the 15 queries (what a batched warm API would cost)."""
    warm_totals = []
    for _ in range(args.grid_repeats):
        seconds, _ = _timed(
            lambda: [_warm_run(index, q, gt_of[i], args.limit) for i, q in enumerate(queries)]
        )
        warm_totals.append(seconds)
    engine_total, _ = _timed(
        lambda: [_engine_run(store, q, gt_of[i], args.limit) for i, q in enumerate(queries)]
    )
    batched_totals, matmul_s = [], []
    for _ in range(args.grid_repeats):
        seconds, (mm, ranked) = _timed(lambda: _batched_grid(index, queries, gt_of, args.limit))
        batched_totals.append(seconds)
        matmul_s.append(mm)
    reference_ranked = [index.ranked_lonlat(q, args.limit) for q in queries]
    batched_same = all(np.array_equal(a, b) for a, b in zip(ranked, reference_ranked, strict=True))
    out = {
        "warm_total_s": warm_totals,
        "engine_total_s": engine_total,
        "batched_warm_total_s": batched_totals,
        "batched_matmul_s": matmul_s,
        "batched_same_rankings_as_warm": batched_same,
    }
    _say(
        f"grid of {len(queries)}: (a) warm {_list_s(warm_totals)}; (b) engine {engine_total:.2f} s; "
        f"(a) batched {_list_s(batched_totals)} (matmul {_list_s(matmul_s)}; same rankings: {batched_same})"
    )
    return out


def _batched_grid(
    index: WarmIndex, queries: np.ndarray, gt_of: list[np.ndarray], limit: int
) -> tuple[float, list[np.ndarray]]:
    """(a) for all queries with the products done as one matrix product; otherwise the same steps
    as WarmIndex.ranked_lonlat (re-stated here only to time them: the service has no batch call)."""
    start = time.perf_counter()
    scores = index.vectors @ np.ascontiguousarray(queries.T, dtype=np.float32)  # (N, nq)
    matmul = time.perf_counter() - start
    ranked_all = []
    for i in range(queries.shape[0]):
        column = np.ascontiguousarray(scores[:, i])
        ranked = _rank_from_scores(index, column, limit)
        _curves(ranked, gt_of[i], limit)
        ranked_all.append(ranked)
    return matmul, ranked_all


def _rank_from_scores(index: WarmIndex, scores: np.ndarray, k: int) -> np.ndarray:
    """WarmIndex.ranked_lonlat's steps after the product (its ORDER_RULE: rounded score, raw score,
    point id), re-stated to time them; the split checks that it still equals the service's output."""
    top = np.argpartition(-scores, k - 1)[:k]
    raw = scores[top].astype(np.float64)
    order = np.lexsort((index.id_rank[top], -raw, -np.round(raw, SCORE_DECIMALS)))
    return index.lonlat[top[order]]


def _split(
    index: WarmIndex, queries: np.ndarray, gt_of: list[np.ndarray], args: argparse.Namespace
) -> dict[str, Any]:
    """Where one warm query's time goes: WarmIndex.ranked_lonlat's steps, re-stated and timed one
    by one (checked equal to its output), and each curve."""
    k = args.limit
    parts: dict[str, list[float]] = {}
    equal = True
    for i, q in enumerate(queries):
        q32 = np.asarray(q, dtype=np.float32)
        marks = [time.perf_counter()]
        scores = index.vectors @ q32
        marks.append(time.perf_counter())
        top = np.argpartition(-scores, k - 1)[:k]
        marks.append(time.perf_counter())
        raw = scores[top].astype(np.float64)
        order = np.lexsort((index.id_rank[top], -raw, -np.round(raw, SCORE_DECIMALS)))
        ranked = index.lonlat[top[order]]
        marks.append(time.perf_counter())
        options = {"radius_deg": RADIUS_DEG, "max_k": k}
        parity_curve(ranked, gt_of[i], **options)
        marks.append(time.perf_counter())
        exact_curve(ranked, gt_of[i], **options)
        marks.append(time.perf_counter())
        exact_curve(ranked, gt_of[i], distance="great_circle", **options)
        marks.append(time.perf_counter())
        # argpartition on the scores themselves, without the negated copy: a possible saving.
        t0 = time.perf_counter()
        alt = np.argpartition(scores, scores.shape[0] - k)[scores.shape[0] - k :]
        alt_s = time.perf_counter() - t0
        equal &= bool(np.array_equal(ranked, index.ranked_lonlat(q, k)))
        equal &= set(alt.tolist()) == set(top.tolist()) or _boundary_tie(scores, top, alt)
        names = ("matvec", "argpartition", "order", "parity_curve", "exact_curve", "exact_gc_curve")
        for name, a, b in zip(names, marks, marks[1:], strict=False):
            parts.setdefault(name, []).append(b - a)
        parts.setdefault("argpartition_no_negation", []).append(alt_s)
    out: dict[str, Any] = {name: _stats(values) for name, values in parts.items()}
    out["restated_equals_ranked_lonlat"] = equal
    gib = index.vectors.nbytes / GIB
    out["matvec_gib_per_s"] = gib / (out["matvec"]["median_ms"] / 1000)
    _say(
        "split (median ms): "
        + ", ".join(f"{name} {out[name]['median_ms']:,.1f}" for name in parts)
        + f"; matvec reads {gib:.2f} GiB at {out['matvec_gib_per_s']:.1f} GiB/s; restated == service: {equal}"
    )
    return out


def _boundary_tie(scores: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
    # Two argpartitions may pick different tiles only among those tied at the k-th score.
    diff = set(a.tolist()) ^ set(b.tolist())
    return len({float(scores[i]) for i in diff}) <= 1


# ----------------------------------------------------------------------------- (c) the reference


def _reference(
    features: Path,
    lonlat_file: Path,
    queries: np.ndarray,
    gt_of: list[np.ndarray],
    args: argparse.Namespace,
) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    plan = [("dropped", i % len(queries)) for i in range(args.ref_queries)]
    plan += [("cached", i % len(queries)) for i in range(args.ref_cached)]
    for cache_mode, i in plan:
        if cache_mode == "dropped":
            _drop_from_cache(features)
        else:
            _read_through(features)  # make sure it is cached, outside the timing
        cached_before = _cached_fraction(features)
        if _mem_available_gib() < features.stat().st_size / GIB + MEMORY_MARGIN_GIB:
            _say(f"(c) stopped: MemAvailable {_mem_available_gib():.1f} GiB is too low for another load")
            break
        run = _reference_run(features, lonlat_file, queries[i], gt_of[i], args.limit)
        run.update({"query": i, "cache": cache_mode, "cached_fraction_before": cached_before})
        runs.append(run)
        _say(
            f"(c) query {i:>2} ({cache_mode}, {100 * cached_before:.0f} % cached): "
            f"total {run['total_s']:.2f} s = load {run['load_s']:.2f} + matvec {run['matvec_s']:.2f} "
            f"+ top-k {run['topk_s']:.2f} "
            f"+ KD-tree curve {run['curve_s']:.2f}; MemAvailable {run['mem_available_gib']:.1f} GiB"
        )
    out: dict[str, Any] = {"runs": runs}
    for mode in ("dropped", "cached"):
        mine = [r for r in runs if r["cache"] == mode]
        if mine:
            out[mode] = {
                key: _stats([r[f"{key}_s"] for r in mine])
                for key in ("total", "load", "matvec", "topk", "curve")
            }
            out[mode]["load_gib_per_s"] = (
                features.stat().st_size / GIB / (out[mode]["load"]["median_ms"] / 1000)
            )
    return out


def _reference_run(
    features: Path, lonlat_file: Path, q: np.ndarray, gt: np.ndarray, limit: int
) -> dict[str, Any]:
    """One query run as the reference works: load the saved features, exact flat inner-product
    top-`limit` (rounded to 6 decimals, unstable sort, as it does), then its per-k KD-tree curve.
    numpy's matrix-vector product stands in for faiss's IndexFlatIP (whose `add` would also copy
    the 5.6 GiB once more per run: not counted, so (c) is if anything too fast)."""
    t0 = time.perf_counter()
    vectors = np.load(features)
    lonlat = np.load(lonlat_file)
    t1 = time.perf_counter()
    scores = vectors @ np.asarray(q, dtype=np.float32)
    t2 = time.perf_counter()
    top = np.argpartition(-scores, limit - 1)[:limit]
    top = top[np.argsort(-scores[top], kind="stable")]  # faiss returns its hits by score
    order = np.argsort(-np.round(scores[top].astype(np.float64), SCORE_DECIMALS))
    ranked = lonlat[top[order]]
    t3 = time.perf_counter()
    curve = reference_curve(ranked, gt, RADIUS_DEG, limit, GRID_POINTS)
    t4 = time.perf_counter()
    available = _mem_available_gib()
    del vectors
    return {
        "total_s": t4 - t0,
        "load_s": t1 - t0,
        "matvec_s": t2 - t1,
        "topk_s": t3 - t2,
        "curve_s": t4 - t3,
        "mem_available_gib": available,
        "best_f1": curve.best[1],
    }


def _drop_from_cache(path: Path) -> None:
    # This file's pages only (they are clean): the rest of the page cache, which other users of
    # the machine rely on, is left alone.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _read_through(path: Path) -> None:
    with path.open("rb") as f:
        while f.read(64 * 2**20):
            pass


def _cached_fraction(path: Path) -> float:
    """Fraction of the file's bytes in the page cache (util-linux fincore); NaN if unavailable."""
    try:
        res = subprocess.run(
            ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(res.stdout.split()[0]) / path.stat().st_size
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return float("nan")


# ----------------------------------------------------------------------------- output


def _ratios(r: dict[str, Any]) -> dict[str, float]:
    warm = r["interleaved"]["warm"]["median_ms"]
    out = {"engine_over_warm": r["interleaved"]["engine"]["median_ms"] / warm}
    grid = float(np.median(r["grid"]["warm_total_s"]))
    for mode in ("dropped", "cached"):
        if mode in r["reference"]:
            ref = r["reference"][mode]["total"]["median_ms"]
            out[f"reference_{mode}_over_warm"] = ref / warm
            out[f"reference_{mode}_grid_over_warm_grid"] = 15 * ref / 1000 / grid
    return out


def _print_summary(r: dict[str, Any], args: argparse.Namespace) -> None:
    it, grid, split, ref, ratios = r["interleaved"], r["grid"], r["split"], r["reference"], r["ratios"]
    wb = r["warm_build"]
    split_names = (
        "matvec",
        "argpartition",
        "argpartition_no_negation",
        "order",
        "parity_curve",
        "exact_curve",
        "exact_gc_curve",
    )
    n_compared = len(it["comparisons"])
    rows: list[tuple[str, str]] = [
        ("points x dim", f"{args.points:,} x {args.dim}"),
        ("load average (1/5/15 min)", " | ".join(f"{k}: {v}" for k, v in r["load_average"].items())),
        ("MemAvailable before parts", ", ".join(f"{k} {v:.1f}" for k, v in r["mem_available_gib"].items())),
        (
            "warm index build",
            f"{wb['wall_s']:.1f} s, {wb['nbytes_gib']:.2f} GiB (anon RSS +{wb['rss_anon_delta_gib']:.2f})",
        ),
        ("(a) warm, one query + 3 curves", _fmt(it["warm"])),
        ("(b) engine, one query + 3 curves", _fmt(it["engine"])),
        ("(b) / (a)", f"{ratios['engine_over_warm']:.2f}x"),
        (
            "(a) == (b) rankings / curves",
            f"{it['identical_rankings']} / {it['identical_curves']} of {n_compared}; best + AUPRC "
            f"{it['identical_best_and_auprc']}; differences from engine scores "
            f"{it['differences_explained_by_engine_scores']} (up to exact ties "
            f"{it['differences_explained_by_engine_scores_up_to_exact_ties']}) of "
            f"{n_compared - it['identical_rankings']}",
        ),
        ("grid of 15, (a) back to back", _list_s(grid["warm_total_s"])),
        ("grid of 15, (b) back to back", f"{grid['engine_total_s']:.2f} s"),
        (
            "grid of 15, (a) with one matmul",
            f"{_list_s(grid['batched_warm_total_s'])} (matmul {_list_s(grid['batched_matmul_s'])})",
        ),
        *(
            (f"  split: {n}", f"median {split[n]['median_ms']:,.1f} ms, p95 {split[n]['p95_ms']:,.1f}")
            for n in split_names
        ),
        ("  matvec bandwidth", f"{split['matvec_gib_per_s']:.1f} GiB/s"),
    ]
    for mode in ("dropped", "cached"):
        if mode in ref:
            s = ref[mode]
            rows += [
                (f"(c) reference, file {mode}", _fmt(s["total"])),
                (
                    "  of which (medians)",
                    f"load {s['load']['median_ms']:,.0f} ms ({s['load_gib_per_s']:.2f} GiB/s), matvec "
                    f"{s['matvec']['median_ms']:,.0f}, top-k {s['topk']['median_ms']:,.0f}, KD-tree curve "
                    f"{s['curve']['median_ms']:,.0f}",
                ),
                (f"(c, {mode}) / (a), per query", f"{ratios[f'reference_{mode}_over_warm']:.1f}x"),
                (f"(c, {mode}) x 15 / (a) grid", f"{ratios[f'reference_{mode}_grid_over_warm_grid']:.1f}x"),
            ]
    width = max(len(k) for k, _ in rows)
    _say("\n" + "=" * (width + 70))
    for key, value in rows:
        _say(f"{key:<{width}}  {value}")
    _say("=" * (width + 70))


def _check_memory(results: dict[str, Any], part: str, need_gib: float) -> None:
    available = _mem_available_gib()
    results["mem_available_gib"][part] = available
    _say(f"MemAvailable {part}: {available:.1f} GiB (part needs about {need_gib:.1f} + {MEMORY_MARGIN_GIB})")
    if available < need_gib + MEMORY_MARGIN_GIB:
        sys.exit(f"not enough memory for {part}: {available:.1f} GiB available")


def _blas_threads() -> Any:
    try:
        from threadpoolctl import threadpool_info

        return [(i.get("internal_api"), i.get("num_threads")) for i in threadpool_info()]
    except ImportError:
        return None


def _fmt(s: dict[str, float]) -> str:
    return (
        f"median {s['median_ms']:,.0f} ms, p95 {s['p95_ms']:,.0f} ms "
        f"(min {s['min_ms']:,.0f}, max {s['max_ms']:,.0f}; n={s['n']})"
    )


def _list_s(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values) + " s"


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def _say(text: str) -> None:
    print(text, flush=True)


if __name__ == "__main__":
    main()

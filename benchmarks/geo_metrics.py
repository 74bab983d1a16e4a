"""Geo-localization metrics: the reference's per-k KD-tree procedure against the one-pass curves.

    python benchmarks/geo_metrics.py [--tiles 20000] [--gt 1200] [--points 100] [--repeats 5]

Builds a synthetic but realistic ranking: tile corners on the 0.2-degree grid within 80 degrees of
latitude, clustered around a few regions, the top of the ranking enriched with tiles near the
catalogue, and catalogue points clustered around some of the same regions. Then times, side by
side on the same data:

  (a) the reference procedure, transcribed from its description: for each grid k, both cKDTrees
      rebuilt over the first k tiles and queried for nearest neighbours in map pixels;
  (b) marsbench parity_curve (same grid, one neighbour pass);
  (c) marsbench exact_curve (every k = 1..max_k, one neighbour pass);
  plus (b) and (c) with great-circle distance.

It checks that (a) and (b) give identical numbers (grid, every precision, recall and F1, best and
AUPRC, compared with ==) and exits non-zero otherwise. Needs scipy for (a).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from marsbench.evaluator.metrics.geo import exact_curve, parity_curve

MAP_WIDTH = 2644

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ReferenceCurve:
    k: list[int]
    precision: list[float]
    recall: list[float]
    f1: list[float]
    best: tuple[int, float, float, float]
    auprc: float


def main() -> None:
    args = _parse_args()
    tiles, gt = synthetic_ranking(args.tiles, args.gt, seed=args.seed)
    print(
        f"data: {len(tiles)} ranked tiles, {len(gt)} catalogue points, radius 0.5 deg, points={args.points}"
    )

    reference_s, reference = _time(
        lambda: reference_curve(tiles, gt, 0.5, args.max_k, args.points), args.repeats
    )
    parity_s, parity = _time(
        lambda: parity_curve(tiles, gt, max_k=args.max_k, points=args.points), args.repeats
    )
    exact_s, exact = _time(lambda: exact_curve(tiles, gt, max_k=args.max_k), args.repeats)
    gc_parity_s, gc_parity = _time(
        lambda: parity_curve(tiles, gt, max_k=args.max_k, points=args.points, distance="great_circle"),
        args.repeats,
    )
    gc_exact_s, gc_exact = _time(
        lambda: exact_curve(tiles, gt, max_k=args.max_k, distance="great_circle"), args.repeats
    )

    rows = [
        ("(a) reference: cKDTree x2 per grid k", reference_s, len(reference.k)),
        ("(b) parity_curve, planar", parity_s, len(parity.k)),
        ("(c) exact_curve, planar", exact_s, len(exact.k)),
        ("(b') parity_curve, great_circle", gc_parity_s, len(gc_parity.k)),
        ("(c') exact_curve, great_circle", gc_exact_s, len(gc_exact.k)),
    ]
    print(f"\n{'procedure':<40} {'k values':>9} {'best of ' + str(args.repeats):>12} {'vs (a)':>8}")
    for name, seconds, n_k in rows:
        print(f"{name:<40} {n_k:>9} {seconds * 1e3:>9.1f} ms {reference_s / seconds:>7.1f}x")

    print(
        f"\nparity:  best F1 {parity.best.f1:.6f} at k={parity.best.k} "
        f"(P {parity.best.precision:.6f}, R {parity.best.recall:.6f}), AUPRC {parity.auprc:.6f}"
    )
    print(
        f"exact:   best F1 {exact.best.f1:.6f} at k={exact.best.k} "
        f"(P {exact.best.precision:.6f}, R {exact.best.recall:.6f}), AUPRC {exact.auprc:.6f}"
    )
    print(f"great circle parity: best F1 {gc_parity.best.f1:.6f} at k={gc_parity.best.k}")

    identical = (
        parity.k.tolist() == reference.k
        and parity.precision.tolist() == reference.precision
        and parity.recall.tolist() == reference.recall
        and parity.f1.tolist() == reference.f1
        and (parity.best.k, parity.best.f1, parity.best.precision, parity.best.recall) == reference.best
        and parity.auprc == reference.auprc
    )
    print(f"(a) == (b) on every grid value, best and AUPRC: {identical}")
    if not identical:
        sys.exit(1)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiles", type=int, default=20_000, help="ranked tiles (the reference's top K)")
    parser.add_argument("--gt", type=int, default=1_200, help="catalogue points")
    parser.add_argument("--max-k", type=int, default=20_000)
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs of each procedure; the best counts"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def synthetic_ranking(n_tiles: int, n_gt: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat) of ranked tile corners (unique, on the 0.2-degree grid) and catalogue points."""
    rng = np.random.default_rng(seed)
    regions = np.column_stack([rng.uniform(-175, 175, 12), rng.uniform(-60, 60, 12)])
    spread = rng.uniform(1.0, 6.0, 12)
    # Catalogue: clustered around the first 8 regions.
    which = rng.integers(0, 8, n_gt)
    gt = regions[which] + rng.normal(0, 1, (n_gt, 2)) * spread[which, None]
    gt[:, 1] = np.clip(gt[:, 1], -79.9, 79.9)
    # Candidate tiles: near catalogue points, around all regions, and anywhere.
    near = gt[rng.integers(0, n_gt, n_tiles)] + rng.normal(0, 0.6, (n_tiles, 2))
    which = rng.integers(0, 12, n_tiles)
    around = regions[which] + rng.normal(0, 1, (n_tiles, 2)) * spread[which, None] * 1.5
    anywhere = np.column_stack([rng.uniform(-180, 180, n_tiles), rng.uniform(-80, 80, n_tiles)])
    candidates = np.concatenate([near, around, anywhere])
    corners = np.floor(candidates / 0.2) * 0.2
    corners[:, 0] = np.mod(corners[:, 0] + 180.0, 360.0) - 180.0
    corners = np.round(corners[np.abs(corners[:, 1]) <= 80.0], 1)
    _, first = np.unique(corners, axis=0, return_index=True)
    first.sort()  # keep the near / around / anywhere order for the ranking below
    corners = corners[first]
    # Ranking: a noisy score that favours the near-catalogue candidates.
    source_rank = np.arange(len(corners)) / len(corners)
    order = np.argsort(source_rank + rng.normal(0, 0.25, len(corners)), kind="stable")
    return corners[order][:n_tiles], gt


def reference_curve(
    tiles: np.ndarray, gt: np.ndarray, radius_deg: float, max_k: int, points: int
) -> ReferenceCurve:
    """The reference's per-k procedure (from its description, not its code)."""
    from scipy.spatial import cKDTree

    radius = radius_deg * (MAP_WIDTH / 360.0)
    top = min(len(tiles), max_k)
    step = max(1, top // points)
    ks = list(range(step, top + 1, step))
    if ks[-1] != top:
        ks.append(top)
    best: tuple[int, float, float, float] | None = None
    precisions: list[float] = []
    recalls: list[float] = []
    f1s: list[float] = []
    for k in ks:
        gt_px = _pixels(gt)
        pred_px = _pixels(tiles[:k])
        gt_dist, _ = cKDTree(pred_px).query(gt_px, k=1)
        pred_dist, _ = cKDTree(gt_px).query(pred_px, k=1)
        recall = int((gt_dist <= radius).sum()) / len(gt_px)
        precision = int((pred_dist <= radius).sum()) / len(pred_px)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        if best is None or f1 > best[1]:
            best = (k, f1, precision, recall)
        precisions.append(precision)
        recalls.append(recall)
        f1s.append(f1)
    assert best is not None
    r = np.array(recalls)
    p = np.array(precisions)
    order = np.argsort(r)
    r, p = r[order], p[order]
    # sklearn.metrics.auc on increasing x is numpy's trapezoid sum.
    area = float(np.sum((r[1:] - r[:-1]) * (p[1:] + p[:-1]) / 2.0))
    return ReferenceCurve(ks, precisions, recalls, f1s, best, area)


def _pixels(lonlat: np.ndarray) -> np.ndarray:
    lon, lat = lonlat[:, 0], lonlat[:, 1]
    return np.stack([(lon + 180) / 360 * MAP_WIDTH + 158, (90 - lat) / 180 * 1322 + 68], axis=1)


def _time(fn: Callable[[], T], repeats: int) -> tuple[float, T]:
    best = float("inf")
    result = fn()  # warm-up, and the result to compare
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best, result


if __name__ == "__main__":
    main()

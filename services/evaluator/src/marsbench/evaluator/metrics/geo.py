"""Global geo-localization metrics (Task 3 of PROTOCOL.md): coverage precision, recall, F1, AUPRC.

A ranked tile is a hit when some catalogue point lies within the radius of it; a catalogue point is
covered when some tile among the first k lies within the radius of it. Two curve variants:

- "parity": the reference's k grid (step = max(1, max_k // points)), its pixel-space distance and
  its trapezoid AUPRC, number for number (PROTOCOL.md, Task 3).
- "exact": the same quantities at every k = 1..max_k (an improvement; never a parity number).

Both come from one neighbour pass instead of the reference's two KD-trees rebuilt per k: each
tile's hit flag and each point's first covering rank are found once, and every k is then a
cumulative sum or a binary search. Distance is "planar" (the reference's) or "great_circle" on the
Mars sphere. Values are fractions in 0..1 (the report multiplies by 100). Coordinates are
(lon, lat) degrees, tiles in rank order; the caller ranks them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np

from marsbench.tasks.geo import DEFAULT_RADIUS_DEG
from marsbench.tasks.geo import DEFAULT_TOP_K as DEFAULT_MAX_K

Distance = Literal["planar", "great_circle"]
Variant = Literal["parity", "exact"]

DEFAULT_POINTS = 100
MARS_RADIUS_KM = 3396.19

# The reference measures in pixels of a 2644 x 1322 equirectangular map with a fixed shift. The
# scale is isotropic (2644 / 360 == 1322 / 180), so this is planar degrees scaled, but the shift
# and the scaling round differently from a degree computation: a catalogue point exactly 0.5
# degrees from a tile corner can fall either side of the radius, so parity keeps these numbers.
MAP_WIDTH = 2644
MAP_HEIGHT = 1322
SHIFT_X = 158
SHIFT_Y = 68

# Grid cells a little wider than the radius, so float rounding of a cell index can never hide a
# pair; the cell-index magnitude is capped so integer keys cannot overflow and divisions stay exact
# enough for that margin.
_CELL_MARGIN = 1e-6
_MAX_CELL_INDEX = 2**19


@dataclass(frozen=True, slots=True)
class GeoBest:
    """The curve point with the highest F1 (the first such k, as in the reference)."""

    k: int
    f1: float
    precision: float
    recall: float


@dataclass(frozen=True, slots=True, eq=False)
class Coverage:
    """The one-pass neighbour result for tiles in rank order and catalogue points.

    `tile_hit[i]`: the tile at rank i + 1 has a catalogue point within the radius.
    `first_cover[j]`: the 0-based rank of the first tile within the radius of point j, or
    `n_tiles` when no tile covers it; point j is covered at k exactly when first_cover[j] < k.
    """

    tile_hit: np.ndarray
    first_cover: np.ndarray

    @property
    def n_tiles(self) -> int:
        return int(self.tile_hit.shape[0])

    @property
    def n_gt(self) -> int:
        return int(self.first_cover.shape[0])


@dataclass(frozen=True, slots=True, eq=False)
class GeoCurve:
    """A precision/recall/F1 curve over k, its best point and its AUPRC.

    `variant` ("parity" or "exact") and `distance` ("planar" or "great_circle") say how it was
    made; only parity with planar distance reproduces the reference. `radius` is the threshold
    actually compared, in `radius_unit` (map pixels for planar, km for great circle).
    `coverage` keeps the per-tile and per-point flags for the first `n_tiles` tiles, so a map
    can draw any k; `tile_hit` and `gt_covered` are those flags at the best k.
    """

    variant: Variant
    distance: Distance
    radius: float
    radius_unit: Literal["px", "km"]
    k: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    best: GeoBest
    auprc: float
    coverage: Coverage

    @property
    def n_tiles(self) -> int:
        return self.coverage.n_tiles

    @property
    def n_gt(self) -> int:
        return self.coverage.n_gt

    @property
    def tile_hit(self) -> np.ndarray:
        """Hit flags of the tiles at ranks 1..best.k."""
        return self.coverage.tile_hit[: self.best.k]

    @property
    def gt_covered(self) -> np.ndarray:
        """Per catalogue point: covered by a tile within the first best.k."""
        return self.coverage.first_cover < self.best.k

    def as_dict(self) -> dict[str, float | int]:
        return {
            "f1": self.best.f1,
            "precision": self.best.precision,
            "recall": self.best.recall,
            "k": self.best.k,
            "auprc": self.auprc,
        }


# ----------------------------------------------------------------------------- building blocks


def parity_k_grid(n_ranked: int, *, max_k: int = DEFAULT_MAX_K, points: int = DEFAULT_POINTS) -> np.ndarray:
    """The reference's k values: step, 2 step, ... <= max_k, then max_k if the grid missed it.

    max_k is first cut to the number of ranked tiles; no tiles gives an empty grid.
    """
    if max_k < 1:
        raise ValueError(f"max_k must be at least 1, got {max_k}")
    if points < 1:
        raise ValueError(f"points must be at least 1, got {points}")
    top = min(n_ranked, max_k)
    if top <= 0:
        return np.zeros(0, dtype=np.int64)
    step = max(1, top // points)
    grid = np.arange(step, top + 1, step, dtype=np.int64)
    if grid[-1] != top:
        grid = np.append(grid, np.int64(top))
    return grid


def lonlat_to_pixel(lonlat: np.ndarray) -> np.ndarray:
    """(lon, lat) degrees to the reference's map pixels, with its exact operation order."""
    lon = lonlat[:, 0]
    lat = lonlat[:, 1]
    px = (lon + 180.0) / 360.0 * MAP_WIDTH + SHIFT_X
    py = (90.0 - lat) / 180.0 * MAP_HEIGHT + SHIFT_Y
    return np.stack([px, py], axis=1)


def radius_deg_to_px(radius_deg: float) -> float:
    """The reference's radius in pixels: radius_deg * (2644 / 360.0), in that order."""
    return radius_deg * (MAP_WIDTH / 360.0)


def radius_deg_to_km(radius_deg: float) -> float:
    """An arc of radius_deg degrees on the Mars sphere, in km."""
    return radius_deg * np.pi / 180.0 * MARS_RADIUS_KM


def auprc(recall: np.ndarray, precision: np.ndarray, *, stable: bool = False) -> float:
    """Trapezoidal area under (recall, precision), points sorted by recall ascending.

    stable=False sorts with np.argsort's default kind, as the reference does before
    sklearn.metrics.auc; the order within tied recalls decides which precisions bound the
    neighbouring trapezoids, so this is what parity needs. stable=True keeps the given (k) order
    within ties. The sum is numpy's trapezoid expression, so it rounds the same way. Fewer than
    two points have no area: 0.0 (sklearn raises there).
    """
    r = np.asarray(recall, dtype=np.float64)
    p = np.asarray(precision, dtype=np.float64)
    if r.shape != p.shape or r.ndim != 1:
        raise ValueError(f"recall and precision must be equal-length 1-d arrays: {r.shape}, {p.shape}")
    if r.shape[0] < 2:
        return 0.0
    order = np.argsort(r, kind="stable") if stable else np.argsort(r)
    r = r[order]
    p = p[order]
    return float(np.sum((r[1:] - r[:-1]) * (p[1:] + p[:-1]) / 2.0))


def f1_scores(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """2PR / (P + R) with the reference's operation order, 0 where P + R = 0."""
    total = precision + recall
    out = np.zeros_like(total)
    np.divide(2.0 * precision * recall, total, out=out, where=total > 0)
    return out


def coverage(
    ranked_lonlat: np.ndarray,
    gt_lonlat: np.ndarray,
    *,
    radius_deg: float = DEFAULT_RADIUS_DEG,
    distance: Distance = "planar",
    radius_km: float | None = None,
) -> Coverage:
    """Per-tile hit flags and per-point first covering ranks, in one neighbour pass.

    planar: the reference's pixel map and test, sqrt(dx*dx + dy*dy) <= radius_px (cKDTree's p=2
    distance is that square root of dx*dx + dy*dy); no cos(latitude), no wrap at the antimeridian.
    great_circle: haversine distance on the Mars sphere <= the radius in km (radius_km, or
    radius_deg of arc), which wraps in longitude and across the poles.
    """
    tiles = _as_lonlat(ranked_lonlat, "ranked_lonlat")
    gt = _as_lonlat(gt_lonlat, "gt_lonlat")
    threshold, _ = _threshold(radius_deg, distance, radius_km)
    n, m = tiles.shape[0], gt.shape[0]
    tile_hit = np.zeros(n, dtype=bool)
    first_cover = np.full(m, n, dtype=np.int64)
    if n and m:
        if distance == "planar":
            tile_pts, gt_pts = lonlat_to_pixel(tiles), lonlat_to_pixel(gt)
            cell = threshold
        else:
            _check_latitudes(tiles, gt)
            tile_pts, gt_pts = _unit_vectors(tiles), _unit_vectors(gt)
            # Chord of the angle; the absolute slack covers trig rounding at tiny radii.
            angle = min(threshold / MARS_RADIUS_KM, np.pi)
            cell = 2.0 * np.sin(angle / 2.0) + 1e-9
        ti, gj = _candidate_pairs(tile_pts, gt_pts, cell)
        if distance == "planar":
            within = _planar_within(tile_pts[ti], gt_pts[gj], threshold)
        else:
            within = _great_circle_km(tiles[ti], gt[gj]) <= threshold
        ti, gj = ti[within], gj[within]
        tile_hit[ti] = True
        np.minimum.at(first_cover, gj, ti)
    _freeze(tile_hit, first_cover)
    return Coverage(tile_hit=tile_hit, first_cover=first_cover)


def curve_at(cov: Coverage, k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """precision@k, recall@k and F1@k for each k (1 <= k <= cov.n_tiles)."""
    k = np.asarray(k, dtype=np.int64)
    if k.size and (k.min() < 1 or k.max() > cov.n_tiles):
        raise ValueError(f"k must lie in 1..{cov.n_tiles}")
    hits = np.cumsum(cov.tile_hit, dtype=np.int64)
    precision = hits[k - 1] / k if k.size else np.zeros(0)
    if cov.n_gt:
        covered = np.searchsorted(np.sort(cov.first_cover), k, side="left")
        recall = covered / cov.n_gt
    else:
        recall = np.zeros(k.shape[0])
    return precision, recall, f1_scores(precision, recall)


def pr_samples(curve: GeoCurve, *, max_points: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(k, precision@k, recall@k) at most `max_points` k for plotting a curve.

    The k are the curve's own grid when it is small (a third of `max_points` or less: the parity
    grid, over which its AUPRC is taken), log-spaced k from 1 to the last grid k (the small k a
    linear grid skips), the best-F1 k and the last k. Values come from the curve's coverage, so
    at a grid k they equal the curve's own. No tiles: empty arrays.
    """
    if max_points < 3:
        raise ValueError(f"max_points must be at least 3, got {max_points}")
    if curve.k.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)
    top = int(curve.k[-1])
    kept = np.asarray([curve.best.k, top], dtype=np.int64)
    if curve.k.size <= max_points // 3:
        kept = np.union1d(kept, curve.k)
    spread = np.rint(np.geomspace(1, top, max(max_points - kept.size, 1))).astype(np.int64)
    k = np.union1d(kept, spread)
    precision, recall, _ = curve_at(curve.coverage, k)
    return k, precision, recall


# ----------------------------------------------------------------------------- the two curves


def parity_curve(
    ranked_lonlat: np.ndarray,
    gt_lonlat: np.ndarray,
    *,
    radius_deg: float = DEFAULT_RADIUS_DEG,
    max_k: int = DEFAULT_MAX_K,
    points: int = DEFAULT_POINTS,
    distance: Distance = "planar",
    radius_km: float | None = None,
) -> GeoCurve:
    """The reference's curve: its k grid, best F1 (first maximum) and AUPRC over the grid.

    With distance="planar" (the default) the numbers equal the reference's. No tiles gives an
    empty curve with best k = 0 and zeros (the reference returns no best there); no catalogue
    point gives zeros at every k with best at the first grid k, as in the reference.
    """
    tiles = _as_lonlat(ranked_lonlat, "ranked_lonlat")
    k = parity_k_grid(tiles.shape[0], max_k=max_k, points=points)
    return _curve("parity", tiles, gt_lonlat, k, radius_deg, distance, radius_km, stable_auprc=False)


def exact_curve(
    ranked_lonlat: np.ndarray,
    gt_lonlat: np.ndarray,
    *,
    radius_deg: float = DEFAULT_RADIUS_DEG,
    max_k: int = DEFAULT_MAX_K,
    distance: Distance = "planar",
    radius_km: float | None = None,
) -> GeoCurve:
    """Every k = 1..min(n, max_k): the best F1 over all k and the AUPRC over all points.

    An improvement beside parity, never a parity number. Recall never decreases with k, so the
    points are already in recall order; ties keep k order (a stable sort).
    """
    if max_k < 1:
        raise ValueError(f"max_k must be at least 1, got {max_k}")
    tiles = _as_lonlat(ranked_lonlat, "ranked_lonlat")
    k = np.arange(1, min(tiles.shape[0], max_k) + 1, dtype=np.int64)
    return _curve("exact", tiles, gt_lonlat, k, radius_deg, distance, radius_km, stable_auprc=True)


def _curve(
    variant: Variant,
    tiles: np.ndarray,
    gt_lonlat: np.ndarray,
    k: np.ndarray,
    radius_deg: float,
    distance: Distance,
    radius_km: float | None,
    *,
    stable_auprc: bool,
) -> GeoCurve:
    top = int(k[-1]) if k.size else 0
    cov = coverage(tiles[:top], gt_lonlat, radius_deg=radius_deg, distance=distance, radius_km=radius_km)
    precision, recall, f1 = curve_at(cov, k)
    if k.size:
        # argmax returns the first maximum: the reference's strict ">" scan.
        i = int(np.argmax(f1))
        best = GeoBest(k=int(k[i]), f1=float(f1[i]), precision=float(precision[i]), recall=float(recall[i]))
    else:
        best = GeoBest(k=0, f1=0.0, precision=0.0, recall=0.0)
    threshold, unit = _threshold(radius_deg, distance, radius_km)
    _freeze(k, precision, recall, f1)
    return GeoCurve(
        variant=variant,
        distance=distance,
        radius=threshold,
        radius_unit=unit,
        k=k,
        precision=precision,
        recall=recall,
        f1=f1,
        best=best,
        auprc=auprc(recall, precision, stable=stable_auprc),
        coverage=cov,
    )


# ----------------------------------------------------------------------------- neighbour search


def _candidate_pairs(a: np.ndarray, b: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i into a, j into b) in the same or adjacent grid cells of side > radius.

    A superset of the pairs within `radius` (per coordinate, which every distance used here
    bounds); each pair appears once. Cost is O((n + m) log n) plus the candidates.
    """
    scale = float(max(np.abs(a).max(), np.abs(b).max()))
    cell = max(radius * (1.0 + _CELL_MARGIN), scale / _MAX_CELL_INDEX)
    if cell <= 0.0:
        cell = 1.0  # all points at the origin with radius 0: any cell size works
    ca = np.floor(a / cell).astype(np.int64)
    cb = np.floor(b / cell).astype(np.int64)
    low = np.minimum(ca.min(axis=0), cb.min(axis=0)) - 1
    span = np.maximum(ca.max(axis=0), cb.max(axis=0)) + 2 - low
    strides = np.concatenate([[1], np.cumprod(span[:-1])]).astype(np.int64)
    keys = (ca - low) @ strides
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    pairs_a: list[np.ndarray] = []
    pairs_b: list[np.ndarray] = []
    for offset in itertools.product((-1, 0, 1), repeat=a.shape[1]):
        query = (cb + np.asarray(offset, dtype=np.int64) - low) @ strides
        start = np.searchsorted(sorted_keys, query, side="left")
        counts = np.searchsorted(sorted_keys, query, side="right") - start
        total = int(counts.sum())
        if total == 0:
            continue
        # Expand each query's [start, start + count) run into positions, without a Python loop.
        run_start = np.cumsum(counts) - counts
        positions = np.repeat(start - run_start, counts) + np.arange(total)
        pairs_a.append(order[positions])
        pairs_b.append(np.repeat(np.arange(b.shape[0]), counts))
    if not pairs_a:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(pairs_a), np.concatenate(pairs_b)


def _planar_within(a: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
    # cKDTree sums 0 + dx*dx + dy*dy and returns its sqrt; the sign of dx is immaterial.
    dx = a[:, 0] - b[:, 0]
    dy = a[:, 1] - b[:, 1]
    return np.sqrt(dx * dx + dy * dy) <= threshold


def _great_circle_km(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Haversine distance in km between (lon, lat) degree rows of a and b."""
    lon1, lat1 = np.radians(a[:, 0]), np.radians(a[:, 1])
    lon2, lat2 = np.radians(b[:, 0]), np.radians(b[:, 1])
    h = np.sin((lat2 - lat1) / 2.0) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2.0) ** 2
    return 2.0 * MARS_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def _unit_vectors(lonlat: np.ndarray) -> np.ndarray:
    lon, lat = np.radians(lonlat[:, 0]), np.radians(lonlat[:, 1])
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)


# ----------------------------------------------------------------------------- validation


def _threshold(
    radius_deg: float, distance: Distance, radius_km: float | None
) -> tuple[float, Literal["px", "km"]]:
    if distance == "planar":
        if radius_km is not None:
            raise ValueError("radius_km applies to great_circle distance only")
        _check_radius(radius_deg, "radius_deg")
        return radius_deg_to_px(radius_deg), "px"
    if distance == "great_circle":
        if radius_km is not None:
            _check_radius(radius_km, "radius_km")
            return float(radius_km), "km"
        _check_radius(radius_deg, "radius_deg")
        return radius_deg_to_km(radius_deg), "km"
    raise ValueError(f"distance must be 'planar' or 'great_circle', got {distance!r}")


def _check_radius(value: float, name: str) -> None:
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite non-negative number, got {value}")


def _as_lonlat(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{name} must have shape (n, 2) of (lon, lat), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains non-finite coordinates")
    return array


def _check_latitudes(*arrays: np.ndarray) -> None:
    for array in arrays:
        if np.abs(array[:, 1]).max() > 90.0:
            raise ValueError("latitudes must lie in -90..90 for great_circle distance")


def _freeze(*arrays: np.ndarray) -> None:
    # The result dataclasses are frozen; their arrays should not be writable either.
    for array in arrays:
        array.setflags(write=False)

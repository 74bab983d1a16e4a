"""Geo-localization metrics: hand-worked cases, the k grid, edge cases, distances, brute force,
and an independent transcription of the reference's per-k KD-tree procedure."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marsbench.evaluator.metrics.geo import (
    MARS_RADIUS_KM,
    GeoCurve,
    auprc,
    coverage,
    exact_curve,
    parity_curve,
    parity_k_grid,
)

EXACT = 1e-12

# Five tiles in rank order and three catalogue points, radius 0.5 degrees:
#   G1 (0, 0), G2 (10, 0), G3 (20, 0)
#   T1 (0.2, 0) hits G1, T2 (50, 0) miss, T3 (10, 0.4) hits G2, T4 (0, -0.2) hits G1, T5 miss.
HAND_TILES = np.array([[0.2, 0.0], [50.0, 0.0], [10.0, 0.4], [0.0, -0.2], [30.0, 30.0]])
HAND_GT = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])


def values(curve: GeoCurve) -> tuple[list[int], list[float], list[float], list[float]]:
    """The curve's k, precision, recall and F1 as lists."""
    return curve.k.tolist(), curve.precision.tolist(), curve.recall.tolist(), curve.f1.tolist()


def f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


# ----------------------------------------------------------------------------- hand-worked cases


def test_hand_case_every_k() -> None:
    # 5 tiles < 100 points: step = max(1, 5 // 100) = 1, so k = 1..5.
    curve = parity_curve(HAND_TILES, HAND_GT)
    k, precision, recall, f1s = values(curve)
    assert k == [1, 2, 3, 4, 5]
    # hits so far 1, 1, 2, 3, 3 over k.
    assert precision == pytest.approx([1.0, 0.5, 2 / 3, 3 / 4, 3 / 5], abs=EXACT)
    # covered: {G1}, {G1}, {G1, G2}, {G1, G2}, {G1, G2} of 3.
    assert recall == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3], abs=EXACT)
    # F1: 2(1)(1/3)/(4/3) = 1/2; (1/3)/(5/6) = 2/5; 2/3; 1/(17/12) = 12/17; (4/5)/(19/15) = 12/19.
    assert f1s == pytest.approx([1 / 2, 2 / 5, 2 / 3, 12 / 17, 12 / 19], abs=EXACT)
    assert curve.best.k == 4
    assert curve.best.f1 == pytest.approx(12 / 17, abs=EXACT)
    assert (curve.best.precision, curve.best.recall) == pytest.approx((3 / 4, 2 / 3), abs=EXACT)
    # Recall steps 1/3 -> 2/3 between k = 2 (P = 1/2) and k = 3 (P = 2/3); flat pieces add 0:
    # (2/3 - 1/3) * (1/2 + 2/3) / 2 = 7/36.
    assert curve.auprc == pytest.approx(7 / 36, abs=EXACT)
    # Flags at best k = 4: T1, T3, T4 hit; G1, G2 covered, G3 not.
    assert curve.tile_hit.tolist() == [True, False, True, True]
    assert curve.gt_covered.tolist() == [True, True, False]
    assert curve.as_dict() == {
        "f1": curve.best.f1,
        "precision": 0.75,
        "recall": curve.best.recall,
        "k": 4,
        "auprc": curve.auprc,
    }
    assert (curve.variant, curve.distance, curve.radius_unit) == ("parity", "planar", "px")
    assert curve.radius == 0.5 * (2644 / 360.0)


def test_hand_case_coarse_grid() -> None:
    # points = 2: step = 5 // 2 = 2, grid 2, 4, then 5 appended.
    curve = parity_curve(HAND_TILES, HAND_GT, points=2)
    k, precision, recall, _ = values(curve)
    assert k == [2, 4, 5]
    assert precision == pytest.approx([1 / 2, 3 / 4, 3 / 5], abs=EXACT)
    assert recall == pytest.approx([1 / 3, 2 / 3, 2 / 3], abs=EXACT)
    assert curve.best.k == 4
    # (2/3 - 1/3) * (1/2 + 3/4) / 2 = 5/24, then a flat piece.
    assert curve.auprc == pytest.approx(5 / 24, abs=EXACT)


def test_exact_curve_hand_case_matches_every_k() -> None:
    curve = exact_curve(HAND_TILES, HAND_GT)
    assert curve.variant == "exact"
    assert values(curve) == values(parity_curve(HAND_TILES, HAND_GT))
    assert curve.auprc == pytest.approx(7 / 36, abs=EXACT)


def test_best_is_first_of_tied_f1() -> None:
    # G1 (0, 0), G2 (10, 0); T1 hits G1, T2 and T3 miss, T4 hits G2.
    # k=1: P=1, R=1/2 -> F1 = 1/1.5 = 2/3; k=4: P=1/2, R=1 -> F1 = 1/1.5 = 2/3 (bit-equal).
    tiles = np.array([[0.0, 0.0], [50.0, 0.0], [60.0, 0.0], [10.0, 0.0]])
    gt = np.array([[0.0, 0.0], [10.0, 0.0]])
    curve = parity_curve(tiles, gt)
    assert curve.f1[0] == curve.f1[3] == max(curve.f1)
    assert curve.best.k == 1
    assert exact_curve(tiles, gt).best.k == 1


# ----------------------------------------------------------------------------- the k grid


@pytest.mark.parametrize(
    ("n", "max_k", "points", "expected"),
    [
        (7, 20_000, 100, list(range(1, 8))),  # n < points: step 1
        (250, 20_000, 100, list(range(2, 251, 2))),  # step 2 lands on 250
        (257, 20_000, 100, [*range(2, 257, 2), 257]),  # step 2 misses 257: appended
        (1000, 333, 100, list(range(3, 334, 3))),  # max_k cuts n; step 3 lands on 333
        (1000, 335, 100, [*range(3, 334, 3), 335]),
        (20_000, 20_000, 100, list(range(200, 20_001, 200))),
        (1, 20_000, 100, [1]),
        (0, 20_000, 100, []),
    ],
)
def test_parity_k_grid(n: int, max_k: int, points: int, expected: list[int]) -> None:
    assert parity_k_grid(n, max_k=max_k, points=points).tolist() == expected


def test_grid_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_k"):
        parity_k_grid(10, max_k=0)
    with pytest.raises(ValueError, match="points"):
        parity_k_grid(10, points=0)


def test_curves_cut_at_max_k() -> None:
    rng = np.random.default_rng(3)
    tiles = rng.uniform(-5, 5, size=(50, 2))
    gt = rng.uniform(-5, 5, size=(10, 2))
    assert parity_curve(tiles, gt, max_k=20, points=100).k.tolist() == list(range(1, 21))
    exact = exact_curve(tiles, gt, max_k=20)
    assert exact.k.tolist() == list(range(1, 21))
    assert exact.n_tiles == 20


# ----------------------------------------------------------------------------- AUPRC


def test_auprc_hand_case_and_degenerate_inputs() -> None:
    # (0, 1) -> (0.5, 0.5) -> (1, 0.5): 0.5 * 1.5 / 2 + 0.5 * 1.0 / 2 = 0.375 + 0.25.
    assert auprc(np.array([0.0, 0.5, 1.0]), np.array([1.0, 0.5, 0.5])) == pytest.approx(0.625, abs=EXACT)
    # Unsorted input is sorted by recall first.
    assert auprc(np.array([1.0, 0.0, 0.5]), np.array([0.5, 1.0, 0.5])) == pytest.approx(0.625, abs=EXACT)
    assert auprc(np.array([0.3]), np.array([0.9])) == 0.0
    assert auprc(np.zeros(0), np.zeros(0)) == 0.0


def test_auprc_tie_order_matters_and_stable_keeps_given_order() -> None:
    # Recall tie at 0.25: which precision bounds each neighbouring trapezoid depends on the order.
    recall = np.array([0.0, 0.25, 0.25, 1.0])
    # 0.25 * (1 + 0.2) / 2 + 0 + 0.75 * (0.8 + 0.4) / 2 = 0.15 + 0.45.
    assert auprc(recall, np.array([1.0, 0.2, 0.8, 0.4]), stable=True) == pytest.approx(0.6, abs=EXACT)
    # Tied points swapped: 0.25 * (1 + 0.8) / 2 + 0.75 * (0.2 + 0.4) / 2 = 0.225 + 0.225.
    assert auprc(recall, np.array([1.0, 0.8, 0.2, 0.4]), stable=True) == pytest.approx(0.45, abs=EXACT)


def test_auprc_matches_sklearn() -> None:
    metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is not installed")
    rng = np.random.default_rng(5)
    for _ in range(50):
        recall = np.sort(rng.integers(0, 20, size=101)) / 20
        precision = rng.uniform(size=101)
        order = np.argsort(recall)
        assert auprc(recall, precision) == metrics.auc(recall[order], precision[order])


# ----------------------------------------------------------------------------- empty inputs


def test_no_tiles_gives_zeros() -> None:
    for curve in (parity_curve(np.zeros((0, 2)), HAND_GT), exact_curve([], HAND_GT)):
        assert curve.k.size == 0
        assert curve.as_dict() == {"f1": 0.0, "precision": 0.0, "recall": 0.0, "k": 0, "auprc": 0.0}
        assert curve.tile_hit.tolist() == []
        assert curve.gt_covered.tolist() == [False, False, False]


def test_no_catalogue_points_gives_zeros() -> None:
    curve = parity_curve(HAND_TILES, np.zeros((0, 2)))
    assert curve.k.tolist() == [1, 2, 3, 4, 5]
    assert curve.precision.tolist() == [0.0] * 5
    assert curve.recall.tolist() == [0.0] * 5
    # Nothing beats F1 = 0 strictly, so the best stays at the first grid k, as in the reference.
    assert curve.as_dict() == {"f1": 0.0, "precision": 0.0, "recall": 0.0, "k": 1, "auprc": 0.0}
    assert exact_curve(HAND_TILES, []).best.k == 1


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        parity_curve(np.zeros((3, 3)), HAND_GT)
    with pytest.raises(ValueError, match="non-finite"):
        parity_curve(np.array([[np.nan, 0.0]]), HAND_GT)
    with pytest.raises(ValueError, match="radius_deg"):
        parity_curve(HAND_TILES, HAND_GT, radius_deg=-1.0)
    with pytest.raises(ValueError, match="great_circle"):
        parity_curve(HAND_TILES, HAND_GT, radius_km=10.0)
    with pytest.raises(ValueError, match="distance"):
        parity_curve(HAND_TILES, HAND_GT, distance="manhattan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="latitudes"):
        exact_curve(np.array([[0.0, 95.0]]), HAND_GT, distance="great_circle")


def test_results_are_read_only() -> None:
    curve = exact_curve(HAND_TILES, HAND_GT)
    for array in (curve.k, curve.precision, curve.recall, curve.f1, curve.coverage.tile_hit):
        assert not array.flags.writeable


# ----------------------------------------------------------------------------- distances


def test_planar_does_not_wrap_but_great_circle_does() -> None:
    tiles = np.array([[179.9, 10.0]])
    gt = np.array([[-179.9, 10.0]])
    # Planar: 359.8 degrees apart. Great circle: 0.2 degrees of longitude at lat 10, about 11.7 km.
    assert parity_curve(tiles, gt).best.recall == 0.0
    assert parity_curve(tiles, gt, distance="great_circle").best.recall == 1.0
    assert exact_curve(tiles, gt, distance="great_circle").best.f1 == 1.0


def test_great_circle_across_the_pole_and_in_km() -> None:
    # Opposite meridians at lat 89.9 are 0.2 degrees of arc apart through the pole.
    assert exact_curve([[0.0, 89.9]], [[180.0, 89.9]], distance="great_circle").best.recall == 1.0
    assert exact_curve([[0.0, 89.9]], [[180.0, 89.9]]).best.recall == 0.0
    # 0.2 degrees along the equator is 0.2 * pi / 180 * 3396.19 = 11.855 km.
    arc = 0.2 * math.pi / 180 * MARS_RADIUS_KM
    near = exact_curve([[0.0, 0.0]], [[0.2, 0.0]], distance="great_circle", radius_km=arc + 0.01)
    far = exact_curve([[0.0, 0.0]], [[0.2, 0.0]], distance="great_circle", radius_km=arc - 0.01)
    assert (near.best.recall, far.best.recall) == (1.0, 0.0)
    assert near.radius_unit == "km"


def test_planar_uses_the_reference_pixel_arithmetic_at_the_boundary() -> None:
    # Both pairs are exactly 0.5 degrees apart in exact arithmetic. In the reference's shifted
    # pixel map the first rounds to just over radius_px and the second to within it.
    assert exact_curve([[126.2, 21.8]], [[126.7, 21.8]]).best.recall == 0.0
    assert exact_curve([[126.2, 21.8]], [[125.8, 21.5]]).best.recall == 1.0


# ----------------------------------------------------------------------------- brute force


def plain_pixels(lonlat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (lonlat[:, 0] + 180) / 360 * 2644 + 158, (90 - lonlat[:, 1]) / 180 * 1322 + 68


def plain_within_planar(tiles: np.ndarray, gt: np.ndarray, radius_deg: float) -> np.ndarray:
    """within[i, j]: tile i is within the radius of point j, by the full distance matrix."""
    tx, ty = plain_pixels(tiles)
    gx, gy = plain_pixels(gt)
    dx = tx[:, None] - gx[None, :]
    dy = ty[:, None] - gy[None, :]
    return np.sqrt(dx * dx + dy * dy) <= radius_deg * (2644 / 360.0)


def plain_within_great_circle(tiles: np.ndarray, gt: np.ndarray, radius_deg: float) -> np.ndarray:
    within = np.zeros((len(tiles), len(gt)), dtype=bool)
    for i, (lon1, lat1) in enumerate(np.radians(tiles)):
        for j, (lon2, lat2) in enumerate(np.radians(gt)):
            h = (
                math.sin((lat2 - lat1) / 2) ** 2
                + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
            )
            km = 2 * MARS_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))
            within[i, j] = km <= radius_deg * math.pi / 180 * MARS_RADIUS_KM
    return within


def plain_curve(within: np.ndarray, ks: list[int]) -> tuple[list[float], list[float], list[float]]:
    """Per k, from scratch: precision, recall, F1 over the first k rows of `within`."""
    precision, recall, f1s = [], [], []
    for k in ks:
        top = within[:k]
        p = int(top.any(axis=1).sum()) / k
        r = int(top.any(axis=0).sum()) / within.shape[1]
        precision.append(p)
        recall.append(r)
        f1s.append(f1(p, r))
    return precision, recall, f1s


def grid_data(seed: int, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Clustered tiles on the 0.2-degree corner grid, points on a 0.1-degree grid near them (many
    exactly 0.5 degrees from a corner, e.g. offsets (0.3, 0.4)), plus off-grid points."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform([-170, -70], [170, 70], size=(4, 2))
    raw = centres[rng.integers(0, 4, n * 3)] + rng.normal(0, 1.5, size=(n * 3, 2))
    tiles = np.unique(np.round(raw / 0.2) * 0.2, axis=0)
    tiles = np.round(tiles[rng.permutation(len(tiles))[:n]], 1)
    offsets = rng.choice([-0.5, -0.4, -0.3, 0.0, 0.3, 0.4, 0.5], size=(m, 2))
    on_grid = np.round(tiles[rng.integers(0, len(tiles), m)] + offsets, 1)
    off_grid = centres[rng.integers(0, 4, m // 2)] + rng.normal(0, 2.0, size=(m // 2, 2))
    return tiles, np.concatenate([on_grid, off_grid])


@pytest.mark.parametrize(("seed", "n", "m", "points"), [(0, 400, 60, 100), (1, 257, 40, 100), (2, 90, 30, 7)])
def test_one_pass_parity_matches_per_k_brute_force(seed: int, n: int, m: int, points: int) -> None:
    tiles, gt = grid_data(seed, n, m)
    within = plain_within_planar(tiles, gt, 0.5)
    curve = parity_curve(tiles, gt, points=points)
    precision, recall, f1s = plain_curve(within, curve.k.tolist())
    assert curve.precision.tolist() == precision
    assert curve.recall.tolist() == recall
    assert curve.f1.tolist() == f1s
    # The test data really exercises hits and the exact-boundary arithmetic.
    assert 0 < within.sum() < within.size


def test_exact_curve_matches_brute_force_and_parity_on_the_grid() -> None:
    tiles, gt = grid_data(4, 300, 50)
    exact = exact_curve(tiles, gt)
    precision, recall, f1s = plain_curve(plain_within_planar(tiles, gt, 0.5), list(range(1, 301)))
    assert (exact.precision.tolist(), exact.recall.tolist(), exact.f1.tolist()) == (precision, recall, f1s)
    parity = parity_curve(tiles, gt)
    rows = parity.k - 1
    assert exact.precision[rows].tolist() == parity.precision.tolist()
    assert exact.recall[rows].tolist() == parity.recall.tolist()
    assert exact.best.f1 >= parity.best.f1


def test_great_circle_matches_brute_force_with_wrap_and_poles() -> None:
    rng = np.random.default_rng(6)
    # Points crowd the antimeridian and the poles so wrap-around pairs are common.
    lon = np.concatenate([rng.uniform(178, 180, 60), rng.uniform(-180, -178, 60), rng.uniform(-180, 180, 60)])
    lat = np.concatenate([rng.uniform(-3, 3, 120), rng.uniform(88, 90, 60)])
    tiles = np.stack([lon, lat], axis=1)[rng.permutation(180)]
    gt = np.stack(
        [rng.choice([-179.8, 179.8, 0.0, 90.0], 40), rng.choice([-1.0, 0.0, 1.0, 89.5], 40)], axis=1
    )
    cov = coverage(tiles, gt, radius_deg=1.0, distance="great_circle")
    within = plain_within_great_circle(tiles, gt, 1.0)
    assert cov.tile_hit.tolist() == within.any(axis=1).tolist()
    first = [int(np.argmax(within[:, j])) if within[:, j].any() else len(tiles) for j in range(len(gt))]
    assert cov.first_cover.tolist() == first
    assert within.sum() > 0


# ----------------------------------------------------------------------------- the reference


ReferenceResult = tuple[
    list[int], list[float], list[float], list[float], tuple[int, float, float, float], float
]


def reference_transcription(
    tiles: np.ndarray, gt: np.ndarray, radius_deg: float, max_k: int, points: int
) -> ReferenceResult:
    """The reference's procedure, transcribed from its description (PROTOCOL.md and the facts in
    docs/benchmarks/geo-metrics.md): a frame sorted by similarity descending; for each grid k,
    both KD-trees rebuilt over the first k rows, nearest-neighbour distances compared <= radius
    in map pixels; best by strict >; sklearn's auc over the argsort-by-recall order."""
    pd = pytest.importorskip("pandas", reason="pandas is not installed")
    spatial = pytest.importorskip("scipy.spatial", reason="scipy is not installed")
    metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is not installed")

    frame = pd.DataFrame(
        {"similarity": np.linspace(1.0, 0.0, len(tiles)), "lon": tiles[:, 0], "lat": tiles[:, 1]}
    )
    frame = frame.sort_values("similarity", ascending=False).reset_index(drop=True)
    width = 2644
    radius = radius_deg * (width / 360.0)

    def to_px(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        return np.stack([(lon + 180) / 360 * width + 158, (90 - lat) / 180 * 1322 + 68], axis=1)

    gt_px = to_px(gt[:, 0], gt[:, 1])
    top = min(len(frame), max_k)
    step = max(1, top // points)
    ks = list(range(step, top + 1, step))
    if ks[-1] != top:
        ks.append(top)
    best: tuple[int, float, float, float] | None = None
    precisions: list[float] = []
    recalls: list[float] = []
    f1s: list[float] = []
    for k in ks:
        head = frame.head(k)
        pred_px = to_px(head["lon"].values, head["lat"].values)
        gt_dist, _ = spatial.cKDTree(pred_px).query(gt_px, k=1)
        pred_dist, _ = spatial.cKDTree(gt_px).query(pred_px, k=1)
        recall = int((gt_dist <= radius).sum()) / len(gt_px)
        precision = int((pred_dist <= radius).sum()) / len(pred_px)
        score = f1(precision, recall)
        if best is None or score > best[1]:
            best = (k, score, precision, recall)
        precisions.append(precision)
        recalls.append(recall)
        f1s.append(score)
    order = np.argsort(np.array(recalls))
    area = metrics.auc(np.array(recalls)[order], np.array(precisions)[order])
    assert best is not None
    return ks, precisions, recalls, f1s, best, area


@pytest.mark.parametrize(
    ("seed", "n", "m", "max_k", "points"),
    [
        (10, 2500, 150, 20_000, 100),
        (11, 1234, 80, 1000, 100),
        (12, 300, 120, 20_000, 40),
        (13, 60, 25, 20_000, 100),
    ],
)
def test_parity_equals_reference_transcription(seed: int, n: int, m: int, max_k: int, points: int) -> None:
    tiles, gt = grid_data(seed, n, m)
    ks, precisions, recalls, f1s, best, area = reference_transcription(tiles, gt, 0.5, max_k, points)
    curve = parity_curve(tiles, gt, max_k=max_k, points=points)
    assert curve.k.tolist() == ks
    np.testing.assert_allclose(curve.precision, precisions, rtol=0, atol=EXACT)
    np.testing.assert_allclose(curve.recall, recalls, rtol=0, atol=EXACT)
    np.testing.assert_allclose(curve.f1, f1s, rtol=0, atol=EXACT)
    # Hit counts are integers: equal precision and recall to 1e-12 means equal counts, so the
    # boundary decisions agree; the values are in fact bit-identical.
    assert curve.precision.tolist() == precisions and curve.recall.tolist() == recalls
    assert curve.best.k == best[0]
    assert (curve.best.f1, curve.best.precision, curve.best.recall) == pytest.approx(best[1:], abs=EXACT)
    assert curve.auprc == pytest.approx(area, abs=EXACT)
    assert curve.auprc == area

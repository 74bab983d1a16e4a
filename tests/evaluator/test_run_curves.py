"""The record's curves agree with the metrics they illustrate (issue 10, item 1)."""

from __future__ import annotations

import numpy as np
import pytest

from marsbench.evaluator.core.curves import geo_curves, paired_curves
from marsbench.evaluator.metrics.geo import exact_curve, parity_curve, pr_samples
from marsbench.evaluator.metrics.paired import log_cutoffs, paired_metrics
from marsbench.tasks.geo import DEFAULT_RADIUS_DEG, DEFAULT_TOP_K


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("n", [1, 7, 10, 240, 100_000])
def test_cutoffs_are_log_spaced_from_1_to_n_with_the_metric_ks(n: int) -> None:
    ks = log_cutoffs(n)
    assert ks[0] == 1 and ks[-1] == n and (np.diff(ks) > 0).all()
    assert {k for k in (1, 5, 10) if k <= n} <= set(ks.tolist())
    assert len(ks) <= 40 + 3


def test_paired_recall_curves_pass_through_r1_and_r10() -> None:
    rng = np.random.default_rng(0)
    images = unit_rows(rng.normal(size=(300, 16)))
    texts = unit_rows(images + rng.normal(scale=1.0, size=(300, 16)))
    metrics = paired_metrics(images, texts)
    curves = paired_curves(metrics)
    assert set(curves) == {"i2t_recall_at_k", "t2i_recall_at_k"}
    for name, direction in (("i2t", metrics.i2t), ("t2i", metrics.t2i)):
        curve = curves[f"{name}_recall_at_k"]
        recall = dict(zip(curve.x, curve.y["recall"], strict=True))
        assert curve.x_label == "k" and curve.x[0] == 1 and curve.x[-1] == 300
        assert recall[1.0] == direction.r1 and recall[10.0] == direction.r10
        assert recall[300.0] == 1.0 and np.all(np.diff(curve.y["recall"]) >= 0)
        for k, value in recall.items():
            assert value == np.mean(direction.ranks <= k)


def tiles_and_truth(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    tiles = np.column_stack([rng.uniform(-10, 10, n), rng.uniform(-5, 5, n)])
    truth = np.column_stack([rng.uniform(-10, 10, 40), rng.uniform(-5, 5, 40)])
    return tiles, truth


def test_the_geo_pr_curve_holds_the_parity_grid_the_best_k_and_small_k() -> None:
    tiles, truth = tiles_and_truth(DEFAULT_TOP_K)
    curve = parity_curve(tiles, truth, max_k=DEFAULT_TOP_K, radius_deg=DEFAULT_RADIUS_DEG)
    pr = geo_curves(curve)["pr"]
    assert pr.x_label == "k" and len(pr.x) <= 300
    points = {k: (p, r) for k, p, r in zip(pr.x, pr.y["precision"], pr.y["recall"], strict=True)}
    # The recorded best point, exactly.
    assert points[float(curve.best.k)] == (curve.best.precision, curve.best.recall)
    # Every point of the parity grid (the AUPRC's), exactly, and the last k.
    for k, p, r in zip(curve.k, curve.precision, curve.recall, strict=True):
        assert points[float(k)] == (p, r)
    assert pr.x[-1] == curve.k[-1] and pr.x[0] == 1.0
    assert all(k < curve.k[0] for k in pr.x[:20])  # log-spaced k below the grid's first step


def test_dense_curves_are_downsampled_keeping_the_best_and_last_k() -> None:
    tiles, truth = tiles_and_truth(DEFAULT_TOP_K)
    curve = exact_curve(tiles, truth, max_k=DEFAULT_TOP_K)
    k, precision, recall = pr_samples(curve, max_points=300)
    assert len(k) <= 300 and k[-1] == DEFAULT_TOP_K and curve.best.k in k
    i = int(np.searchsorted(k, curve.best.k))
    assert (precision[i], recall[i]) == (curve.best.precision, curve.best.recall)
    np.testing.assert_array_equal(precision, curve.precision[k - 1])
    np.testing.assert_array_equal(recall, curve.recall[k - 1])


def test_a_run_that_retrieved_nothing_has_no_pr_curve() -> None:
    curve = parity_curve(np.zeros((0, 2)), np.array([[0.0, 0.0]]))
    assert geo_curves(curve) == {}

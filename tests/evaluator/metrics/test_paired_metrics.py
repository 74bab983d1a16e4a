"""Paired image-text metrics: hand-worked matrices, the tie rules, blocking, argsort, ranx, 100k."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from marsbench.evaluator.metrics import paired as paired_module
from marsbench.evaluator.metrics.paired import (
    MIN_BLOCK_ROWS,
    PAIRED_METRIC_KEYS,
    TIE_RULES,
    TieRule,
    block_bounds,
    direction_metrics,
    paired_metrics,
    paired_ranks,
    partner_ranks,
    recall_curve,
)

EXACT = 1e-12


def vectors_for(similarity: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """(image, text) vectors whose float32 product image @ text.T is exactly `similarity`.

    Images are the unit vectors e_i, so row i of the product is column i of text.T. The metric
    functions take any finite vectors; normalisation is the caller's business.
    """
    matrix = np.asarray(similarity, dtype=np.float32)
    return np.eye(matrix.shape[0], dtype=np.float32), np.ascontiguousarray(matrix.T)


def argsort_ranks(similarity: np.ndarray, *, stable: bool) -> np.ndarray:
    """Partner ranks the plain way: sort each row by descending score, find the diagonal."""
    order = np.argsort(-similarity, axis=1, kind="stable" if stable else None)
    n = similarity.shape[0]
    return np.argmax(order == np.arange(n)[:, None], axis=1) + 1


def random_pairs(n: int, d: int, seed: int, *, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised image vectors and captions near their image (so ranks are spread)."""
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((n, d)).astype(np.float32)
    texts = images + noise * rng.standard_normal((n, d)).astype(np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    return images, texts


def dyadic_pairs(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of eighths, captions near their image: every product and partial sum is exact in
    float32, so any BLAS kernel, blocking or summation order gives the same scores bit for bit."""
    rng = np.random.default_rng(seed)
    images = rng.integers(-8, 9, (n, d))
    texts = images + rng.integers(-4, 5, (n, d))
    return (images / 8).astype(np.float32), (texts / 8).astype(np.float32)


def with_ties(images: np.ndarray, texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Duplicate some captions and images: their scores tie exactly with the originals'."""
    images, texts = images.copy(), texts.copy()
    n = images.shape[0]
    for source, target in ((1, 3), (0, n - 1), (n // 2, n // 2 + 1), (n - 2, 2)):
        texts[target] = texts[source]
    for source, target in ((2, 4), (n - 3, 5), (n // 3, n - 4)):
        images[target] = images[source]
    return images, texts


# ----------------------------------------------------------------------------- hand-worked


def test_three_by_three_by_hand() -> None:
    similarity = [
        [0.9, 0.1, 0.3],
        [0.2, 0.4, 0.8],
        [0.5, 0.6, 0.7],
    ]
    # i2t, by row, partner on the diagonal:
    #   row 0: 0.9, nothing higher -> 1; row 1: 0.4, 0.8 higher -> 2; row 2: 0.7 -> 1
    # t2i, by column:
    #   col 0: 0.9 vs 0.2, 0.5 -> 1; col 1: 0.4 vs 0.1, 0.6 -> 2; col 2: 0.7 vs 0.3, 0.8 -> 2
    metrics = paired_metrics(*vectors_for(similarity))
    assert metrics.i2t_ranks.tolist() == [1, 2, 1]
    assert metrics.t2i_ranks.tolist() == [1, 2, 2]
    expected = {
        "i2t_r1": 2 / 3,
        "i2t_r10": 1.0,
        "i2t_medr": 1.0,  # median of 1, 1, 2
        "i2t_mrr": (1 + 1 / 2 + 1) / 3,  # 0.8333
        "t2i_r1": 1 / 3,
        "t2i_r10": 1.0,
        "t2i_medr": 2.0,  # median of 1, 2, 2
        "t2i_mrr": (1 + 1 / 2 + 1 / 2) / 3,  # 0.6667
    }
    assert list(metrics.as_dict()) == list(PAIRED_METRIC_KEYS)
    assert metrics.as_dict() == pytest.approx(expected, abs=EXACT)
    assert metrics.n == 3 and metrics.ties == "index"


FOUR = [
    [0.9, 0.1, 0.2, 0.3],
    [0.8, 0.5, 0.1, 0.2],
    [0.7, 0.6, 0.5, 0.1],
    [0.4, 0.3, 0.2, 0.1],
]


def test_four_by_four_by_hand_with_a_half_median_and_a_tie() -> None:
    # i2t rows: 0.9 -> 1; 0.5 < 0.8 -> 2; 0.5 < 0.7, 0.6 -> 3; 0.1 < 0.4, 0.3, 0.2 -> 4
    #   R@1 = 1/4, MedR = (2 + 3) / 2 = 2.5, MRR = (1 + 1/2 + 1/3 + 1/4) / 4 = 25/48
    # t2i columns: col 0: 0.9 -> 1; col 1: 0.5 < 0.6 -> 2; col 2: 0.5 -> 1;
    #   col 3: partner 0.1 (row 3) < 0.3, 0.2 and tied with row 2's 0.1. Row 2 comes first, so
    #   the index rule puts it ahead: 4 (optimistic: 3, pessimistic: 4).
    #   R@1 = 2/4, MedR = median(1, 1, 2, 4) = 1.5, MRR = (1 + 1/2 + 1 + 1/4) / 4 = 0.6875
    metrics = paired_metrics(*vectors_for(FOUR))
    assert metrics.i2t_ranks.tolist() == [1, 2, 3, 4]
    assert metrics.t2i_ranks.tolist() == [1, 2, 1, 4]
    assert metrics.as_dict() == pytest.approx(
        {
            "i2t_r1": 0.25,
            "i2t_r10": 1.0,
            "i2t_medr": 2.5,
            "i2t_mrr": 25 / 48,
            "t2i_r1": 0.5,
            "t2i_r10": 1.0,
            "t2i_medr": 1.5,
            "t2i_mrr": 0.6875,
        },
        abs=EXACT,
    )
    optimistic = paired_metrics(*vectors_for(FOUR), ties="optimistic")
    assert optimistic.t2i_ranks.tolist() == [1, 2, 1, 3]
    assert optimistic.t2i.mrr == pytest.approx((1 + 1 / 2 + 1 + 1 / 3) / 4, abs=EXACT)  # 17/24
    assert paired_metrics(*vectors_for(FOUR), ties="pessimistic").t2i_ranks.tolist() == [1, 2, 1, 4]


def test_r_at_10_counts_ranks_up_to_ten() -> None:
    metrics = direction_metrics(np.array([1, 10, 11, 100]))
    assert (metrics.r1, metrics.r10) == (0.25, 0.5)
    assert metrics.medr == 10.5  # a plain median: (10 + 11) / 2
    assert metrics.mrr == pytest.approx((1 + 0.1 + 1 / 11 + 0.01) / 4, abs=EXACT)


def test_a_single_pair_ranks_first() -> None:
    metrics = paired_metrics(np.ones((1, 3)), np.ones((1, 3)))
    assert metrics.as_dict() == dict.fromkeys(PAIRED_METRIC_KEYS, 1.0)


# ----------------------------------------------------------------------------- ties


@pytest.mark.parametrize("n", [3, 7, 150])
def test_all_scores_tied(n: int) -> None:
    # Every score equal: the index rule ranks query i behind the i items before it.
    images, texts = np.ones((n, 4), dtype=np.float32), np.ones((n, 4), dtype=np.float32)
    expected = {"index": np.arange(1, n + 1), "optimistic": np.ones(n), "pessimistic": np.full(n, n)}
    for rule in TIE_RULES:
        i2t, t2i = paired_ranks(images, texts, chunk=64, ties=rule)
        assert i2t.tolist() == expected[rule].tolist()
        assert t2i.tolist() == expected[rule].tolist()


@pytest.mark.parametrize("seed", [0, 1])
def test_the_index_rule_is_a_stable_argsort_and_the_others_bound_it(seed: int) -> None:
    images, texts = with_ties(*random_pairs(300, 16, seed, noise=0.3))
    similarity = images @ texts.T
    i2t, t2i = paired_ranks(images, texts, chunk=64)
    assert i2t.tolist() == argsort_ranks(similarity, stable=True).tolist()
    assert t2i.tolist() == argsort_ranks(similarity.T, stable=True).tolist()
    low_i2t, low_t2i = paired_ranks(images, texts, chunk=64, ties="optimistic")
    high_i2t, high_t2i = paired_ranks(images, texts, chunk=64, ties="pessimistic")
    assert (low_i2t <= i2t).all() and (i2t <= high_i2t).all()
    assert (low_t2i <= t2i).all() and (t2i <= high_t2i).all()
    assert (low_i2t < high_i2t).any() and (low_t2i < high_t2i).any()  # the fixture does tie
    # Bounds, spelled out: strictly higher scores only, and every other equal score too.
    partner_i2t = np.diagonal(similarity)[:, None]
    assert low_i2t.tolist() == (1 + (similarity > partner_i2t).sum(axis=1)).tolist()
    assert high_i2t.tolist() == ((similarity >= partner_i2t).sum(axis=1)).tolist()


# ----------------------------------------------------------------------------- blocks


def test_block_bounds() -> None:
    assert block_bounds(0, 64) == [(0, 0)]
    assert block_bounds(10, 1) == [(0, 10)]  # raised to MIN_BLOCK_ROWS: one block
    assert block_bounds(127, 64) == [(0, 127)]  # fewer than two blocks' worth
    assert block_bounds(130, 64) == [(0, 65), (65, 130)]
    assert block_bounds(1000, 300) == [(0, 334), (334, 667), (667, 1000)]
    for n, chunk in ((1000, 64), (5000, 100), (99_999, None)):
        bounds = block_bounds(n, chunk)
        sizes = [end - start for start, end in bounds]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
        assert min(sizes) >= MIN_BLOCK_ROWS and max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError):
        block_bounds(10, 0)


@pytest.mark.parametrize(("n", "d"), [(700, 48), (300, 512), (129, 3)])
def test_blocks_assemble_the_full_product(n: int, d: int) -> None:
    # The blocks' rows and square diagonals put together are the n x n product. Exact data: whether
    # a BLAS kernel sums a thin block in the full product's order is the platform's business (with
    # OPENBLAS_CORETYPE=Haswell on AMD EPYC it does not, in the last bit).
    images, texts = dyadic_pairs(n, d, seed=n)
    full = images @ texts.T
    for chunk in (64, 100, 256):
        bounds = block_bounds(n, chunk)
        rows = np.concatenate([images[s:e] @ texts.T for s, e in bounds])
        assert np.array_equal(rows, full)
        squares = np.concatenate([np.diagonal(images[s:e] @ texts[s:e].T) for s, e in bounds])
        assert np.array_equal(squares, np.diagonal(full))


def test_a_benchmark_sized_set_is_scored_as_one_product() -> None:
    # The public paired set (2,287 pairs) and far larger ones are one block: each score is the
    # reference's own full product's, whatever the BLAS kernel.
    assert block_bounds(2_287) == [(0, 2_287)]
    assert block_bounds(5_000) == [(0, 5_000)]
    images, texts = random_pairs(2_287, 32, seed=5)
    i2t, t2i = paired_ranks(images, texts)
    full = images @ texts.T
    partner = np.diagonal(full)
    assert i2t.tolist() == (1 + (full > partner[:, None]).sum(axis=1)).tolist()
    assert t2i.tolist() == (1 + (full > partner[None, :]).sum(axis=0)).tolist()


def test_ranks_do_not_depend_on_the_chunk() -> None:
    images, texts = with_ties(*dyadic_pairs(1000, 24, seed=7))
    expected = paired_ranks(images, texts, chunk=10_000)
    for chunk in (None, 1, 64, 100, 333, 499, 500, 1000):
        i2t, t2i = paired_ranks(images, texts, chunk=chunk)
        assert i2t.tolist() == expected[0].tolist(), chunk
        assert t2i.tolist() == expected[1].tolist(), chunk
        assert partner_ranks(images, texts, chunk=chunk).tolist() == expected[0].tolist()


def test_partner_ranks_of_either_side_agree_with_the_one_pass_ranks() -> None:
    images, texts = with_ties(*random_pairs(400, 32, seed=3, noise=0.4))
    i2t, t2i = paired_ranks(images, texts, chunk=64)
    assert partner_ranks(images, texts, chunk=64).tolist() == i2t.tolist()
    assert partner_ranks(texts, images, chunk=64).tolist() == t2i.tolist()


def test_t2i_is_recounted_if_the_diagonal_was_summed_differently(monkeypatch: pytest.MonkeyPatch) -> None:
    images, texts = with_ties(*random_pairs(300, 16, seed=11, noise=0.3))
    expected = paired_ranks(images, texts, chunk=64)
    real = paired_module._square_diagonal

    def off_by_an_ulp(*args: np.ndarray) -> np.ndarray:
        diagonal = real(*args).copy()
        diagonal[::7] = np.nextafter(diagonal[::7], np.float32(np.inf))
        return diagonal

    monkeypatch.setattr(paired_module, "_square_diagonal", off_by_an_ulp)
    i2t, t2i = paired_ranks(images, texts, chunk=64)
    assert i2t.tolist() == expected[0].tolist()
    assert t2i.tolist() == expected[1].tolist()


# ----------------------------------------------------------------------------- independent checks


@pytest.mark.parametrize(("n", "d", "seed"), [(50, 8, 0), (257, 32, 1), (1000, 64, 2)])
def test_agrees_with_a_plain_argsort_on_random_data(n: int, d: int, seed: int) -> None:
    images, texts = random_pairs(n, d, seed)
    similarity = images @ texts.T  # the reference's float32 product
    # Random float32 scores do tie now and then (1000 of them span a few million ulps), but no
    # partner here ties with another score: where ties fall then changes no rank.
    partner = np.diagonal(similarity)
    assert ((similarity == partner[:, None]).sum(axis=1) == 1).all()
    assert ((similarity == partner[None, :]).sum(axis=0) == 1).all()
    metrics = paired_metrics(images, texts, chunk=64)
    i2t = argsort_ranks(similarity, stable=False)
    t2i = argsort_ranks(similarity.T, stable=False)
    assert metrics.i2t_ranks.tolist() == i2t.tolist()
    assert metrics.t2i_ranks.tolist() == t2i.tolist()
    for name, ranks in (("i2t", i2t), ("t2i", t2i)):
        values = metrics.as_dict()
        assert values[f"{name}_r1"] == float(np.mean(ranks <= 1))
        assert values[f"{name}_r10"] == float(np.mean(ranks <= 10))
        assert values[f"{name}_medr"] == float(np.median(ranks))
        assert values[f"{name}_mrr"] == float(np.mean(1.0 / ranks))


def test_float64_input_is_scored_in_float32_like_the_reference() -> None:
    images, texts = random_pairs(200, 16, seed=4, noise=2.0)
    as_float64 = paired_metrics(images.astype(np.float64), texts.astype(np.float64))
    assert as_float64.as_dict() == paired_metrics(images, texts).as_dict()


# ranx's numba kernels warn about an internal integer cast; nothing of ours.
@pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaTypeSafetyWarning")
@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_ranx(seed: int) -> None:
    ranx = pytest.importorskip("ranx")
    n = 120
    images, texts = random_pairs(n, 16, seed, noise=1.2)
    similarity = (images @ texts.T).astype(np.float64)
    metrics = paired_metrics(images, texts)
    names = ["mrr", "recall@1", "recall@10", "hit_rate@1", "hit_rate@10"]
    for direction, scores in (("i2t", similarity), ("t2i", similarity.T)):
        # One relevant document per query: its partner. Recall@k and hit rate@k are then both
        # "the partner is in the top k".
        qrels = ranx.Qrels({f"q{i}": {f"d{i}": 1} for i in range(n)})
        run = ranx.Run({f"q{i}": {f"d{j}": float(scores[i, j]) for j in range(n)} for i in range(n)})
        theirs = ranx.evaluate(qrels, run, names, make_comparable=True)
        ours = metrics.as_dict()
        assert ours[f"{direction}_mrr"] == pytest.approx(theirs["mrr"], abs=1e-9)
        assert ours[f"{direction}_r1"] == pytest.approx(theirs["recall@1"], abs=1e-9)
        assert ours[f"{direction}_r10"] == pytest.approx(theirs["recall@10"], abs=1e-9)
        assert ours[f"{direction}_r1"] == pytest.approx(theirs["hit_rate@1"], abs=1e-9)
        assert ours[f"{direction}_r10"] == pytest.approx(theirs["hit_rate@10"], abs=1e-9)


# ----------------------------------------------------------------------------- curves and checks


def test_recall_curve() -> None:
    ranks = np.array([1, 2, 3, 4, 12])
    curve = recall_curve(ranks, [1, 2, 3, 10, 12, 1000])
    assert curve.tolist() == [0.2, 0.4, 0.6, 0.8, 1.0, 1.0]
    metrics = direction_metrics(ranks)
    assert recall_curve(metrics.ranks, np.array([1, 10])).tolist() == [metrics.r1, metrics.r10]
    for bad in ([0], [1.5], [[1, 2]]):
        with pytest.raises(ValueError, match="ks"):
            recall_curve(ranks, bad)  # type: ignore[arg-type]


def test_rank_arrays_are_read_only_copies() -> None:
    ranks = np.array([1, 2, 3])
    metrics = direction_metrics(ranks)
    ranks[0] = 3
    assert metrics.ranks.tolist() == [1, 2, 3] and metrics.ranks.dtype == np.int64
    with pytest.raises(ValueError):
        metrics.ranks[0] = 5


@pytest.mark.parametrize(
    ("images", "texts", "match"),
    [
        (np.ones((3, 4)), np.ones((3, 5)), "one shape"),
        (np.ones((3, 4)), np.ones((2, 4)), "one shape"),
        (np.ones((0, 4)), np.ones((0, 4)), "non-empty"),
        (np.ones(4), np.ones(4), "one shape"),
        (np.array([[1.0, np.nan]]), np.ones((1, 2)), "NaN"),
        (np.ones((1, 2)), np.array([[np.inf, 1.0]]), "NaN or infinity"),
    ],
)
def test_bad_vectors_are_refused(images: np.ndarray, texts: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        paired_metrics(images, texts)


def test_bad_ranks_and_rules_are_refused() -> None:
    for ranks in (np.array([]), np.array([0, 1]), np.array([1.0, 2.0]), np.ones((2, 2), dtype=int)):
        with pytest.raises(ValueError):
            direction_metrics(ranks)
    rule: TieRule = "random"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="tie rule"):
        paired_metrics(np.ones((2, 2)), np.ones((2, 2)), ties=rule)


# ----------------------------------------------------------------------------- scale


def test_twenty_thousand_pairs_smoke() -> None:
    # 100k pairs take about a minute on 2 cores: benchmarks/paired_metrics.py measures that size.
    n, d = 20_000, 64
    images, texts = random_pairs(n, d, seed=12, noise=4.0)
    start = time.perf_counter()
    metrics = paired_metrics(images, texts)
    elapsed = time.perf_counter() - start
    print(f"\npaired metrics, {n:,} pairs x {d} dims: {elapsed:.1f} s; {metrics.as_dict()}")
    for ranks in (metrics.i2t_ranks, metrics.t2i_ranks):
        assert ranks.shape == (n,) and ranks.min() >= 1 and ranks.max() <= n
    assert 0.0 < metrics.i2t.r1 < metrics.i2t.r10 < 1.0
    assert recall_curve(metrics.t2i_ranks, [10])[0] == metrics.t2i.r10

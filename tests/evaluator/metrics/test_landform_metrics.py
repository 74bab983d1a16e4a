"""Landform metrics: hand-worked cases, edge cases, the tie rule, ranx, and a brute-force check."""

from __future__ import annotations

import math
from collections.abc import Sequence
from collections.abc import Set as AbstractSet

import numpy as np
import pytest

from marsbench.evaluator.metrics import (
    METRIC_KEYS,
    ClassMetrics,
    class_metrics,
    landform_metrics,
    rank_by_score,
    rank_order,
)

EXACT = 1e-12


def metric_values(metrics: ClassMetrics) -> tuple[float, float, float, float]:
    return metrics.ap, metrics.r_precision, metrics.ndcg_at_10, metrics.hit_at_10


def d(rank: int) -> float:
    """The nDCG discount of a hit at 1-based `rank`."""
    return 1.0 / math.log2(rank + 1)


# ----------------------------------------------------------------------------- hand-worked cases


def test_interleaved_hits() -> None:
    # ranked a x b y c, relevant {a, b, c}: hits at ranks 1, 3, 5.
    m = class_metrics(["a", "x", "b", "y", "c"], {"a", "b", "c"})
    # AP: precisions at the hits are 1/1, 2/3, 3/5; over |relevant| = 3.
    assert m.ap == pytest.approx((1 / 1 + 2 / 3 + 3 / 5) / 3, abs=EXACT)
    # R-precision: top 3 = a x b -> 2 relevant of 3.
    assert m.r_precision == pytest.approx(2 / 3, abs=EXACT)
    # nDCG@10: DCG = d(1) + d(3) + d(5); ideal = 3 hits at ranks 1..3.
    assert m.ndcg_at_10 == pytest.approx((d(1) + d(3) + d(5)) / (d(1) + d(2) + d(3)), abs=EXACT)
    assert m.hit_at_10 == 1.0
    assert m.n_relevant == 3


def test_perfect_ranking_with_more_than_ten_relevant() -> None:
    relevant = {f"r{i:02d}" for i in range(12)}
    m = class_metrics([*sorted(relevant), "x", "y"], relevant)
    # Every precision is 1; the ideal DCG has min(12, 10) = 10 hits, all matched.
    assert metric_values(m) == pytest.approx((1.0, 1.0, 1.0, 1.0), abs=EXACT)


def test_fewer_than_ten_items() -> None:
    # ranked x y a, relevant {a}: one hit at rank 3.
    m = class_metrics(["x", "y", "a"], {"a"})
    # AP = (1/3) / 1; R-precision = top 1 (x) holds 0 of 1; DCG = d(3) = 1/2, ideal = d(1) = 1.
    assert metric_values(m) == pytest.approx((1 / 3, 0.0, 0.5, 1.0), abs=EXACT)


def test_first_hit_just_past_ten() -> None:
    ranked = [f"x{i}" for i in range(10)] + ["a", "b"]
    m = class_metrics(ranked, {"a", "b"})
    # Hits at 11 and 12: AP = (1/11 + 2/12) / 2; top 2 holds none; nothing in the top 10.
    assert metric_values(m) == pytest.approx(((1 / 11 + 2 / 12) / 2, 0.0, 0.0, 0.0), abs=EXACT)


def test_relevant_images_beyond_the_cut_off_still_count_in_the_denominator() -> None:
    ranked = ["x", "a", "y", "b", "z", "c"]
    m = class_metrics(ranked, {"a", "b", "c"}, max_k=3)
    # Only x a y count: one hit at rank 2. AP = (1/2) / 3, not (1/2) / 1.
    # R-precision = top 3 holds 1 of 3. DCG = d(2); ideal = d(1) + d(2) + d(3).
    expected_ndcg = d(2) / (d(1) + d(2) + d(3))
    assert metric_values(m) == pytest.approx((1 / 6, 1 / 3, expected_ndcg, 1.0), abs=EXACT)
    # Without the cut-off all three are found: hits at 2, 4, 6 -> AP = (1/2 + 2/4 + 3/6) / 3.
    assert class_metrics(ranked, {"a", "b", "c"}).ap == pytest.approx(0.5, abs=EXACT)


def test_relevant_image_never_ranked() -> None:
    # q is relevant but absent from the ranking: AP = (1/1) / 2; R-precision = top 2 holds 1 of 2.
    m = class_metrics(["a", "x"], {"a", "q"})
    assert metric_values(m) == pytest.approx((0.5, 0.5, d(1) / (d(1) + d(2)), 1.0), abs=EXACT)


def test_no_relevant_image_gives_zeros() -> None:
    assert metric_values(class_metrics(["a", "b"], set())) == (0.0, 0.0, 0.0, 0.0)


def test_as_dict_keys() -> None:
    m = class_metrics(["a"], {"a"})
    assert list(m.as_dict()) == ["mAP", "r_precision", "ndcg@10", "hit@10"]
    assert tuple(landform_metrics({"c": ["a"]}, {"c": {"a"}}).as_dict()) == METRIC_KEYS


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="repeats"):
        class_metrics(["a", "b", "a"], {"a"})
    with pytest.raises(ValueError, match="max_k"):
        class_metrics(["a"], {"a"}, max_k=0)


# ----------------------------------------------------------------------------- the mean over classes


def test_unweighted_mean_over_classes_with_relevant_images() -> None:
    rankings = {
        "dune": ["d1", "c1", "d2"],  # hits at 1, 3 of 2: AP = (1 + 2/3) / 2 = 5/6
        "crater": ["d1", "c1", "d2"],  # hit at 2 of 1: AP = 1/2
        "gully": ["d1", "c1", "d2"],  # no relevant image: excluded
    }
    relevant = {"dune": {"d1", "d2"}, "crater": {"c1"}, "gully": set()}
    result = landform_metrics(rankings, relevant)
    assert result.excluded == ("gully",)
    assert list(result.per_class) == ["crater", "dune"]
    assert result.n_classes == 2
    # Unweighted: (5/6 + 1/2) / 2, although dune has twice the relevant images.
    assert result.mean_ap == pytest.approx((5 / 6 + 1 / 2) / 2, abs=EXACT)
    # R-precision: dune top 2 = d1 c1 -> 1/2; crater top 1 = d1 -> 0.
    assert result.r_precision == pytest.approx((1 / 2 + 0) / 2, abs=EXACT)
    dune_ndcg = (d(1) + d(3)) / (d(1) + d(2))
    crater_ndcg = d(2) / d(1)
    assert result.ndcg_at_10 == pytest.approx((dune_ndcg + crater_ndcg) / 2, abs=EXACT)
    assert result.hit_at_10 == 1.0
    assert result.per_class_table()["crater"]["mAP"] == pytest.approx(0.5, abs=EXACT)


def test_class_missing_from_relevant_is_excluded_and_missing_ranking_is_an_error() -> None:
    assert landform_metrics({"c": ["a"]}, {}).excluded == ("c",)
    with pytest.raises(ValueError, match="no ranking: lost"):
        landform_metrics({"c": ["a"]}, {"c": {"a"}, "lost": {"a"}})


def test_nothing_to_evaluate_gives_zero_means() -> None:
    result = landform_metrics({}, {})
    assert result.as_dict() == {"mAP": 0.0, "r_precision": 0.0, "ndcg@10": 0.0, "hit@10": 0.0}
    assert result.n_classes == 0


def test_max_k_applies_to_every_class() -> None:
    result = landform_metrics({"c": ["x", "a"], "e": ["a", "x"]}, {"c": {"a"}, "e": {"a"}}, max_k=1)
    # c: a falls past the cut-off -> AP 0; e: a at rank 1 -> AP 1.
    assert result.per_class["c"].ap == 0.0
    assert result.mean_ap == pytest.approx(0.5, abs=EXACT)


# ----------------------------------------------------------------------------- the tie rule


def test_ties_are_broken_by_name_ascending() -> None:
    names = ["b", "a", "c", "d"]
    scores = np.array([0.5, 0.5, 0.9, 0.1])
    assert rank_by_score(names, scores) == ["c", "a", "b", "d"]
    assert rank_order(names, scores).tolist() == [2, 1, 0, 3]


def test_tie_rule_decides_metrics_on_exact_ties() -> None:
    # The relevant "b" ties with "a"; name order puts it second: AP = 1/2, not 1.
    ranked = rank_by_score(["b", "a"], np.array([0.7, 0.7]))
    assert class_metrics(ranked, {"b"}).ap == pytest.approx(0.5, abs=EXACT)


def test_rounding_turns_near_ties_into_ties() -> None:
    names = ["z", "a"]
    scores = np.array([0.3000001, 0.3])
    assert rank_by_score(names, scores) == ["z", "a"]
    assert rank_by_score(names, scores, decimals=6) == ["a", "z"]


def test_rank_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="one score per name"):
        rank_by_score(["a", "b"], np.array([1.0]))
    with pytest.raises(ValueError, match="NaN"):
        rank_by_score(["a"], np.array([np.nan]))


def test_ranking_a_large_gallery_matches_python_sort() -> None:
    rng = np.random.default_rng(7)
    n = 20_000
    names = [f"img_{i:06d}.png" for i in rng.permutation(n)]
    scores = np.round(rng.random(n), 3)  # many exact ties
    expected = [names[i] for i in sorted(range(n), key=lambda i: (-scores[i], names[i]))]
    assert rank_by_score(names, scores) == expected


# ----------------------------------------------------------------------------- random collections


def random_collection(
    seed: int, n_images: int = 300, n_classes: int = 8
) -> tuple[dict[str, list[str]], dict[str, set[str]], dict[str, np.ndarray], list[str]]:
    """Images with random labels (class sizes from 1 to dozens) and random per-class scores."""
    rng = np.random.default_rng(seed)
    names = [f"img{i:04d}.png" for i in range(n_images)]
    weights = rng.dirichlet(np.full(n_classes, 0.7))
    labels = rng.choice(n_classes, size=n_images, p=weights)
    relevant: dict[str, set[str]] = {}
    for name, label in zip(names, labels, strict=True):
        relevant.setdefault(f"class{label}", set()).add(name)
    scores = {cls: rng.random(n_images) for cls in relevant}
    rankings = {cls: rank_by_score(names, s) for cls, s in scores.items()}
    return rankings, relevant, scores, names


# ranx's numba kernels warn about an internal integer cast; nothing of ours.
@pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaTypeSafetyWarning")
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("max_k", [None, 50])
def test_agrees_with_ranx(seed: int, max_k: int | None) -> None:
    ranx = pytest.importorskip("ranx")
    rankings, relevant, scores, names = random_collection(seed)
    qrels = ranx.Qrels({cls: dict.fromkeys(images, 1) for cls, images in relevant.items()})
    run_dict: dict[str, dict[str, float]] = {}
    for cls, ranked in rankings.items():
        # Distinct random scores: ranx orders the run exactly as rank_by_score did. A cut-off is
        # given to ranx as a truncated run; its AP and R-precision divide by all relevant images.
        index = {name: i for i, name in enumerate(names)}
        kept = ranked if max_k is None else ranked[:max_k]
        run_dict[cls] = {name: float(scores[cls][index[name]]) for name in kept}
    run = ranx.Run(run_dict)
    # ranx's "ndcg" is the Järvelin-Kekäläinen form (gain = relevance, 1/log2(rank + 1) discount),
    # which with binary judgements is exactly the protocol's nDCG. "hit_rate@10" is 1 when a
    # relevant image is in the top 10.
    theirs = ranx.evaluate(qrels, run, ["map", "r-precision", "ndcg@10", "hit_rate@10"], make_comparable=True)
    ours = landform_metrics(rankings, relevant, max_k=max_k)
    assert ours.mean_ap == pytest.approx(theirs["map"], abs=1e-9)
    assert ours.r_precision == pytest.approx(theirs["r-precision"], abs=1e-9)
    assert ours.ndcg_at_10 == pytest.approx(theirs["ndcg@10"], abs=1e-9)
    assert ours.hit_at_10 == pytest.approx(theirs["hit_rate@10"], abs=1e-9)
    # ranx keeps the per-query values of the last evaluation on the run.
    for cls, value in run.scores["map"].items():
        assert ours.per_class[cls].ap == pytest.approx(float(value), abs=1e-9)
    assert set(run.scores["map"]) == set(ours.per_class)


def brute_force(ranked: Sequence[str], relevant: AbstractSet[str]) -> tuple[float, float, float, float]:
    """The protocol's definitions, spelled out with plain loops."""
    n_rel = len(relevant)
    total = 0.0
    for k in range(1, len(ranked) + 1):
        if ranked[k - 1] in relevant:
            precision_at_k = sum(1 for name in ranked[:k] if name in relevant) / k
            total += precision_at_k
    ap = total / n_rel
    r_precision = sum(1 for name in ranked[:n_rel] if name in relevant) / n_rel
    dcg = 0.0
    for rank in range(1, min(10, len(ranked)) + 1):
        if ranked[rank - 1] in relevant:
            dcg += 1.0 / math.log2(rank + 1)
    ideal = 0.0
    for rank in range(1, min(n_rel, 10) + 1):
        ideal += 1.0 / math.log2(rank + 1)
    hit = 1.0 if any(name in relevant for name in ranked[:10]) else 0.0
    return ap, r_precision, dcg / ideal, hit


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_brute_force_including_ties(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(5, 60))
    names = [f"n{i:03d}" for i in rng.permutation(n)]
    for _ in range(20):
        scores = rng.integers(0, 6, size=n).astype(float)  # coarse scores: many ties
        size = int(rng.integers(1, n + 1))
        relevant = set(rng.choice(names, size=size, replace=False).tolist())
        # The tie rule, written plainly: score descending, then name ascending.
        expected_order = [names[i] for i in sorted(range(n), key=lambda i: (-scores[i], names[i]))]
        ranked = rank_by_score(names, scores)
        assert ranked == expected_order
        assert metric_values(class_metrics(ranked, relevant)) == pytest.approx(
            brute_force(expected_order, relevant), abs=1e-12
        )
        cut = int(rng.integers(1, n + 1))
        assert metric_values(class_metrics(ranked, relevant, max_k=cut)) == pytest.approx(
            brute_force(expected_order[:cut], relevant), abs=1e-12
        )

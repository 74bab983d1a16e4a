"""Landform retrieval metrics (Task 2 of PROTOCOL.md): AP, R-precision, nDCG@10, Hit@10.

Per class, from its ranking of the image collection and its relevant set; then the unweighted
mean over the classes that have at least one relevant image. Values are fractions in 0..1 (the
report multiplies by 100). Everything here is pure and works on a boolean relevance array, so a
100k-image ranking costs a few numpy passes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

import numpy as np

CUTOFF = 10
METRIC_KEYS: tuple[str, ...] = ("mAP", "r_precision", "ndcg@10", "hit@10")

# 1 / log2(rank + 1) for ranks 1..10: the binary-gain DCG discount.
_DISCOUNTS = 1.0 / np.log2(np.arange(2, CUTOFF + 2, dtype=np.float64))


@dataclass(frozen=True, slots=True)
class ClassMetrics:
    """One class's metrics; `ap` is reported under the key "mAP" like the reference's table."""

    ap: float
    r_precision: float
    ndcg_at_10: float
    hit_at_10: float
    n_relevant: int

    def as_dict(self) -> dict[str, float]:
        return {
            "mAP": self.ap,
            "r_precision": self.r_precision,
            "ndcg@10": self.ndcg_at_10,
            "hit@10": self.hit_at_10,
        }


@dataclass(frozen=True, slots=True)
class LandformMetrics:
    """Means over the evaluated classes, and the per-class table (sorted by class name).

    `excluded` lists the ranked classes left out of the mean for having no relevant image.
    With no class evaluated every mean is 0.0, as in the reference.
    """

    mean_ap: float
    r_precision: float
    ndcg_at_10: float
    hit_at_10: float
    per_class: Mapping[str, ClassMetrics] = field(default_factory=dict)
    excluded: tuple[str, ...] = ()

    @property
    def n_classes(self) -> int:
        return len(self.per_class)

    def as_dict(self) -> dict[str, float]:
        return {
            "mAP": self.mean_ap,
            "r_precision": self.r_precision,
            "ndcg@10": self.ndcg_at_10,
            "hit@10": self.hit_at_10,
        }

    def per_class_table(self) -> dict[str, dict[str, float]]:
        """Each class's metrics and `n_relevant`, its relevant images (the report's exact
        random-ranking baseline needs it)."""
        return {
            name: {**metrics.as_dict(), "n_relevant": float(metrics.n_relevant)}
            for name, metrics in self.per_class.items()
        }


def relevance_mask(ranked: Sequence[str], relevant: AbstractSet[str]) -> np.ndarray:
    """hits[i] is True when the image at rank i + 1 is relevant."""
    return np.fromiter((name in relevant for name in ranked), dtype=bool, count=len(ranked))


def metrics_from_hits(hits: np.ndarray, n_relevant: int) -> ClassMetrics:
    """The four metrics from a ranking's boolean relevance array and the relevant set's size.

    `n_relevant` may exceed `hits.sum()` (relevant images beyond a cut-off, or never ranked):
    AP and R-precision still divide by it. With no relevant image every metric is 0.0, as in
    the reference (such a class is left out of the mean anyway).
    """
    if n_relevant <= 0:
        return ClassMetrics(ap=0.0, r_precision=0.0, ndcg_at_10=0.0, hit_at_10=0.0, n_relevant=0)
    hits = np.asarray(hits, dtype=bool)
    if int(hits.sum()) > n_relevant:
        raise ValueError(f"{int(hits.sum())} hits but only {n_relevant} relevant images")
    hits_so_far = np.cumsum(hits)
    hit_ranks = np.flatnonzero(hits) + 1
    # AP: precision at each relevant image's rank, summed, over the whole relevant set.
    ap = float(np.sum(hits_so_far[hit_ranks - 1] / hit_ranks)) / n_relevant
    # R-precision: hits within the top |relevant| (fewer if the ranking is shorter).
    within = min(n_relevant, hits.shape[0])
    r_precision = (float(hits_so_far[within - 1]) if within else 0.0) / n_relevant
    top = hits[:CUTOFF]
    dcg = float(np.sum(_DISCOUNTS[: top.shape[0]][top]))
    ideal_dcg = float(np.sum(_DISCOUNTS[: min(n_relevant, CUTOFF)]))
    return ClassMetrics(
        ap=ap,
        r_precision=r_precision,
        ndcg_at_10=dcg / ideal_dcg,
        hit_at_10=1.0 if top.any() else 0.0,
        n_relevant=n_relevant,
    )


def class_metrics(
    ranked: Sequence[str], relevant: AbstractSet[str], *, max_k: int | None = None
) -> ClassMetrics:
    """AP, R-precision, nDCG@10 (binary gains) and Hit@10 of one class's ranking.

    Only the first `max_k` images count when a cut-off is configured. Image names in `ranked`
    must be unique: the reference would count a repeated relevant name once per occurrence in AP
    and nDCG but once in R-precision and Hit@10, which is no defined metric, so it is refused.
    """
    cut = _cut(ranked, max_k)
    if len(set(cut)) != len(cut):
        raise ValueError("the ranking repeats an image name")
    return metrics_from_hits(relevance_mask(cut, relevant), len(relevant))


def landform_metrics(
    rankings: Mapping[str, Sequence[str]],
    relevant: Mapping[str, AbstractSet[str]],
    *,
    max_k: int | None = None,
) -> LandformMetrics:
    """Per-class metrics for every ranked class, and their unweighted means.

    A ranked class with no relevant image (absent from `relevant`, or an empty set) is excluded
    from the means, as in the reference. A class that has relevant images but no ranking is an
    error: leaving it out would silently change the mean.
    """
    unranked = sorted(name for name, images in relevant.items() if images and name not in rankings)
    if unranked:
        raise ValueError(f"classes with relevant images but no ranking: {', '.join(unranked)}")
    per_class: dict[str, ClassMetrics] = {}
    excluded: list[str] = []
    for name in sorted(rankings):
        images = relevant.get(name, frozenset())
        if not images:
            excluded.append(name)
            continue
        per_class[name] = class_metrics(rankings[name], images, max_k=max_k)
    return LandformMetrics(
        mean_ap=_mean([m.ap for m in per_class.values()]),
        r_precision=_mean([m.r_precision for m in per_class.values()]),
        ndcg_at_10=_mean([m.ndcg_at_10 for m in per_class.values()]),
        hit_at_10=_mean([m.hit_at_10 for m in per_class.values()]),
        per_class=per_class,
        excluded=tuple(excluded),
    )


def _cut(ranked: Sequence[str], max_k: int | None) -> Sequence[str]:
    if max_k is None:
        return ranked
    if max_k < 1:
        raise ValueError(f"max_k must be at least 1, got {max_k}")
    return ranked[:max_k]


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else 0.0

"""Pure metric functions of the evaluator: no I/O, plain numbers in, plain numbers out."""

from marsbench.evaluator.metrics.landform import (
    METRIC_KEYS,
    ClassMetrics,
    LandformMetrics,
    class_metrics,
    landform_metrics,
    metrics_from_hits,
    relevance_mask,
)
from marsbench.evaluator.metrics.ranking import rank_by_score, rank_order

__all__ = [
    "METRIC_KEYS",
    "ClassMetrics",
    "LandformMetrics",
    "class_metrics",
    "landform_metrics",
    "metrics_from_hits",
    "rank_by_score",
    "rank_order",
    "relevance_mask",
]

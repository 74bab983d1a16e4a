"""The record's `curves`: metric curves sampled for the report's plots (parity variant)."""

from __future__ import annotations

from marsbench.evaluator.metrics.geo import GeoCurve, pr_samples
from marsbench.evaluator.metrics.paired import PairedMetrics, log_cutoffs, recall_curve
from marsbench.schemas.runs import Curve

RECALL_POINTS = 40
PR_POINTS = 300


def paired_curves(metrics: PairedMetrics, *, points: int = RECALL_POINTS) -> dict[str, Curve]:
    """Recall@k both ways, at about `points` log-spaced k from 1 to the number of pairs (1, 5 and
    10 always among them), from the partner ranks behind the metrics: at k=1 and k=10 they are
    R@1 and R@10."""
    ks = log_cutoffs(metrics.n, points=points)
    return {
        f"{name}_recall_at_k": Curve(
            x_label="k",
            x=[float(k) for k in ks],
            y={"recall": recall_curve(direction.ranks, ks).tolist()},
        )
        for name, direction in (("i2t", metrics.i2t), ("t2i", metrics.t2i))
    }


def geo_curves(curve: GeoCurve, *, max_points: int = PR_POINTS) -> dict[str, Curve]:
    """Precision and recall against k (see `pr_samples`); none for a run that retrieved nothing."""
    k, precision, recall = pr_samples(curve, max_points=max_points)
    if k.size == 0:
        return {}
    return {
        "pr": Curve(
            x_label="k",
            x=[float(v) for v in k],
            y={"precision": precision.tolist(), "recall": recall.tolist()},
        )
    }

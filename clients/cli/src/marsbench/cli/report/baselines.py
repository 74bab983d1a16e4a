"""What a random ranking scores, computed from the sizes a run record holds (never typed in).

Paired (N pairs, each query with one partner ranked uniformly among N): R@k = min(k, N)/N,
MedR = (N+1)/2 (the median of a uniform rank), MRR = H_N/N, H_N = 1 + 1/2 + ... + 1/N.

Landform, exactly, for a class of R relevant images among N and a cut-off K = min(max_k, N):
AP = (1/R) sum_k rel(k)/k sum_{m<=k} rel(m), and E[rel(k)] = R/N, E[rel(k)rel(m)] = R(R-1)/(N(N-1))
for m != k, so E[AP] = H_K/N + (R-1)(K - H_K)/(N(N-1)) (R/N-like: 1 when R = N, H_N/N when R = 1).
R-precision: min(R, K)/N. nDCG@10: (R/N) sum_{i<=m} 1/log2(i+1) over the ideal DCG, m = min(10, K).
Hit@10: 1 - C(N-R, m)/C(N, m). The table's means are over classes, as the metrics' are.
Records without class sizes fall back to their `chance` block (the evaluator's mean of 20 seeded
shuffles).

Geo: a random set of k tiles has precision (hit tiles)/(tiles) on average; the records hold neither
count (only `retrieved` and `gt_points`), so no geo baseline is computed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from marsbench.schemas.runs import LandformSettings, RunRecord

CUTOFF = 10
LANDFORM_SHUFFLES = 20  # marsbench.evaluator.core.tasks.landform RANDOM_SHUFFLES, seed 0

PAIRED_FORMULA = (
    "Random ranking (computed from the records' pair count N, not measured): R@k = k/N, "
    "MedR = (N+1)/2, MRR = H_N/N with H_N = 1 + 1/2 + ... + 1/N; the same both ways."
)
LANDFORM_EXACT_FORMULA = (
    "Random ranking, exact expectation per class of R relevant images among N (K = min(max_k, N)): "
    "AP = H_K/N + (R-1)(K-H_K)/(N(N-1)) (about R/N), R-Prec = min(R, K)/N, "
    "nDCG@10 = (R/N)\u00b7\u03a3_{i\u226410} 1/log2(i+1) / IDCG@10, Hit@10 = 1 - C(N-R,10)/C(N,10); "
    "averaged over classes like the metrics."
)
LANDFORM_CHANCE_FORMULA = (
    "Random ranking: the records hold no class sizes, so this is the evaluator's Monte Carlo "
    f"(`chance`: the mean of {LANDFORM_SHUFFLES} seeded shuffles of the collection, seed 0), not the exact "
    "expectation (AP of R relevant among N: H_N/N + (R-1)(N-H_N)/(N(N-1)), about R/N)."
)
GEO_MISSING = (
    "Random baseline: a random set of k tiles has precision = (tiles within the radius of a ground-truth "
    "point) / (tiles in the collection) on average, and its F1 and AUPRC follow from how coverage grows; "
    "the records hold neither tile count (counts: retrieved, gt_points), so no geo baseline is shown."
)


def harmonic(n: int) -> float:
    return math.fsum(1.0 / i for i in range(1, n + 1))


def paired_random(n: int) -> dict[str, float]:
    """The paired metrics (both directions) of a random ranking of `n` pairs."""
    if n < 1:
        raise ValueError(f"a random ranking needs at least one pair, got {n}")
    one = {"r1": 1 / n, "r10": min(10, n) / n, "medr": (n + 1) / 2, "mrr": harmonic(n) / n}
    return {f"{direction}_{name}": value for direction in ("i2t", "t2i") for name, value in one.items()}


def expected_ap(n: int, relevant: int, max_k: int | None = None) -> float:
    """E[AP] of a uniformly random ranking of `n` items, `relevant` of them relevant, top `max_k` counted
    (AP divides by all relevant, as metrics_from_hits does)."""
    if not 1 <= relevant <= n:
        raise ValueError(f"need 1 <= relevant <= n, got {relevant} of {n}")
    k = n if max_k is None else min(max_k, n)
    h = harmonic(k)
    pairs = (relevant - 1) * (k - h) / (n * (n - 1)) if n > 1 else 0.0
    return h / n + pairs


def expected_class_metrics(n: int, relevant: int, max_k: int | None = None) -> dict[str, float]:
    """The landform metrics' expectations for one class under a random ranking (module docs)."""
    ap = expected_ap(n, relevant, max_k)
    k = n if max_k is None else min(max_k, n)
    m = min(CUTOFF, k)
    discounts = [1.0 / math.log2(i + 1) for i in range(1, CUTOFF + 1)]
    ideal = math.fsum(discounts[: min(relevant, CUTOFF)])
    ndcg = relevant / n * math.fsum(discounts[:m]) / ideal
    hit = 1.0 - math.comb(n - relevant, m) / math.comb(n, m)
    return {"mAP": ap, "r_precision": min(relevant, k) / n, "ndcg@10": ndcg, "hit@10": hit}


def landform_exact(n: int, sizes: Sequence[int], max_k: int | None = None) -> dict[str, float]:
    """Means over classes of `expected_class_metrics`."""
    per_class = [expected_class_metrics(n, size, max_k) for size in sizes]
    return {key: math.fsum(c[key] for c in per_class) / len(per_class) for key in per_class[0]}


@dataclass(frozen=True)
class Baseline:
    metrics: dict[str, float]
    size: str  # e.g. "N=240"
    exact: bool = True


def paired_baseline(record: RunRecord) -> Baseline | None:
    n = record.counts.get("pairs")
    return Baseline(paired_random(n), f"N={n}") if isinstance(n, int) and n > 0 else None


def _class_sizes(per_class: Mapping[str, Mapping[str, float]]) -> list[int] | None:
    sizes = [values.get("n_relevant") for values in per_class.values()]
    if not sizes or any(size is None or size < 1 for size in sizes):
        return None
    return [int(size) for size in sizes if size is not None]


def landform_baseline(record: RunRecord) -> Baseline | None:
    """Exact when the record holds the class sizes and image count; else its `chance` block."""
    n = record.counts.get("images")
    sizes = _class_sizes(record.per_class)
    max_k = record.settings.max_k if isinstance(record.settings, LandformSettings) else None
    if isinstance(n, int) and n > 0 and sizes and all(size <= n for size in sizes):
        cut = max_k if isinstance(max_k, int) and max_k > 0 else None
        return Baseline(landform_exact(n, sizes, cut), f"N={n}")
    if record.chance:
        return Baseline(dict(record.chance), f"N={n}" if isinstance(n, int) else "", exact=False)
    return None

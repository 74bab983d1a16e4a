"""Paired image-text retrieval metrics (Task 1 of PROTOCOL.md): R@1, R@10, MedR and MRR.

Pair i is image row i and caption row i; each is the only positive of the other. Per direction
(i2t: an image ranks every caption; t2i: a caption ranks every image) the rank r (1-based) of
the true partner gives R@1 = mean(r <= 1), R@10 = mean(r <= 10), MedR = median(r) (a plain
median: a half when the count is even and the middle ranks differ) and MRR = mean(1 / r), as
fractions (the report multiplies by 100 and rounds MedR).

Scores, as in the reference: S = image @ text.T in float32, t2i reading the same matrix by
columns. S is never held whole: it is computed in blocks of image rows (`block_bounds`), and each
block gives the ranks of its own rows (i2t) and partial counts for every column (t2i), so each
score is computed once. A set below about 8k pairs (the benchmark's 2,287 included) is one
block: the reference's own full product. Beyond, blocks keep at least `MIN_BLOCK_ROWS` rows, so
BLAS mostly sums each element as in the full product; some kernels do not (OpenBLAS's Haswell
kernel on AMD EPYC differs in the last bit for thin blocks), which can only move ranks among
scores that tie to the last bit.

Rank of a partner scoring p: 1 + the gallery items scoring strictly more than p + the tied
items that the tie rule puts ahead. The reference uses `np.argsort(-S, axis=1)` (numpy's
default, unstable "quicksort"): where a tied partner lands depends on numpy's version and the
CPU's sort kernel (with numpy 2.x's AVX-512 sort, anywhere among its ties; with the classic
introsort, in index order for rows of up to 16 items). Ties are thus arbitrary there. The
parity rule here is "index", what a stable argsort gives: tied items with a smaller gallery
index rank ahead. "optimistic" (no tie ahead) and "pessimistic" (every tie ahead) bound what
any tie order can give. Only exactly equal float32 scores tie, e.g. duplicate captions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

TieRule = Literal["index", "optimistic", "pessimistic"]
TIE_RULES: tuple[TieRule, ...] = ("index", "optimistic", "pessimistic")
PAIRED_METRIC_KEYS: tuple[str, ...] = (
    "i2t_r1",
    "i2t_r10",
    "i2t_medr",
    "i2t_mrr",
    "t2i_r1",
    "t2i_r10",
    "t2i_medr",
    "t2i_mrr",
)
# Target scores per block when no chunk is given: 128 MB of float32 (a block holds up to twice
# that, plus a bool mask a quarter its size). 335 rows at 100k pairs; below about 8k pairs one
# block, the reference's whole product.
BLOCK_SCORES = 1 << 25
# Thinner products go to other BLAS kernels (gemv, small-matrix kernels) whose float32 sums can
# differ in the last bit from the full product's, which would move near-tied ranks.
MIN_BLOCK_ROWS = 64

Compare = Callable[..., np.ndarray]  # np.greater or np.greater_equal, with `out=`
# Per rule: how an item before the query's partner (smaller index) and one after it must
# compare with the partner's score to rank ahead of it.
_TIE_COMPARE: dict[TieRule, tuple[Compare, Compare]] = {
    "index": (np.greater_equal, np.greater),
    "optimistic": (np.greater, np.greater),
    "pessimistic": (np.greater_equal, np.greater_equal),
}


@dataclass(frozen=True, slots=True)
class DirectionMetrics:
    """One direction's metrics and the partner rank of every query (int64, 1-based)."""

    r1: float
    r10: float
    medr: float
    mrr: float
    ranks: np.ndarray = field(repr=False, compare=False)

    @property
    def n(self) -> int:
        return int(self.ranks.shape[0])


@dataclass(frozen=True, slots=True)
class PairedMetrics:
    """Both directions, as computed under `ties`."""

    i2t: DirectionMetrics
    t2i: DirectionMetrics
    ties: TieRule = "index"

    @property
    def n(self) -> int:
        return self.i2t.n

    @property
    def i2t_ranks(self) -> np.ndarray:
        return self.i2t.ranks

    @property
    def t2i_ranks(self) -> np.ndarray:
        return self.t2i.ranks

    def as_dict(self) -> dict[str, float]:
        """The reference's keys, fractions (MedR as a rank)."""
        values: dict[str, float] = {}
        for name, metrics in (("i2t", self.i2t), ("t2i", self.t2i)):
            values[f"{name}_r1"] = metrics.r1
            values[f"{name}_r10"] = metrics.r10
            values[f"{name}_medr"] = metrics.medr
            values[f"{name}_mrr"] = metrics.mrr
        return values


# ----------------------------------------------------------------------------- metrics from ranks


def direction_metrics(ranks: np.ndarray) -> DirectionMetrics:
    """R@1, R@10, MedR and MRR of 1-based partner ranks, with the reference's expressions."""
    values = _checked_ranks(ranks)
    frozen = values.copy()
    frozen.setflags(write=False)
    return DirectionMetrics(
        r1=float(np.mean(values <= 1)),
        r10=float(np.mean(values <= 10)),
        medr=float(np.median(values)),
        mrr=float(np.mean(1.0 / values)),
        ranks=frozen,
    )


def recall_curve(ranks: np.ndarray, ks: Sequence[int] | np.ndarray) -> np.ndarray:
    """R@k for each k in `ks`: the fraction of queries whose partner ranks at k or better."""
    values = np.sort(_checked_ranks(ranks))
    cutoffs = np.asarray(ks)
    if cutoffs.ndim != 1 or not np.issubdtype(cutoffs.dtype, np.integer) or (cutoffs < 1).any():
        raise ValueError("ks must be a 1-D sequence of integers >= 1")
    return np.searchsorted(values, cutoffs, side="right") / values.shape[0]


def log_cutoffs(n: int, *, points: int = 40, always: Sequence[int] = (1, 5, 10)) -> np.ndarray:
    """About `points` integer cut-offs from 1 to n, log-spaced, plus `always` (those up to n) and n:
    the k of a recall-at-k curve. Sorted, unique, int64."""
    if n < 1 or points < 1:
        raise ValueError(f"need n >= 1 and points >= 1, got n={n}, points={points}")
    grid = np.rint(np.geomspace(1, n, points)).astype(np.int64)
    extra = np.asarray([k for k in always if 1 <= k <= n] + [n], dtype=np.int64)
    return np.union1d(grid, extra)


def _checked_ranks(ranks: np.ndarray) -> np.ndarray:
    values = np.asarray(ranks)
    if values.ndim != 1 or values.shape[0] == 0:
        raise ValueError(f"expected a non-empty 1-D array of ranks, got shape {values.shape}")
    if not np.issubdtype(values.dtype, np.integer) or (values < 1).any():
        raise ValueError("ranks must be integers >= 1")
    return values.astype(np.int64, copy=False)


# ----------------------------------------------------------------------------- ranks from vectors


def block_bounds(n: int, chunk: int | None = None) -> list[tuple[int, int]]:
    """Row ranges [start, end) covering 0..n in equal blocks of chunk to 2 * chunk - 1 rows.

    `chunk` (default: `BLOCK_SCORES // n`) is raised to `MIN_BLOCK_ROWS` first; fewer than two
    blocks' worth is one block.
    """
    if n < 0 or (chunk is not None and chunk < 1):
        raise ValueError(f"need n >= 0 and chunk >= 1, got n={n}, chunk={chunk}")
    rows = chunk if chunk is not None else BLOCK_SCORES // max(n, 1)
    blocks = max(1, n // max(rows, MIN_BLOCK_ROWS))
    size, extra = divmod(n, blocks)
    bounds: list[tuple[int, int]] = []
    start = 0
    for index in range(blocks):
        end = start + size + (1 if index < extra else 0)
        bounds.append((start, end))
        start = end
    return bounds


def partner_ranks(
    queries: np.ndarray, gallery: np.ndarray, *, chunk: int | None = None, ties: TieRule = "index"
) -> np.ndarray:
    """The 1-based rank of gallery row i among all gallery rows for query row i.

    Scores are `queries @ gallery.T` in float32, computed a block of query rows at a time.
    """
    q, g = _vector_pair(queries, gallery)
    before, after = _compare_ops(ties)
    n = q.shape[0]
    ranks = np.empty(n, dtype=np.int64)
    bounds = block_bounds(n, chunk)
    scores, mask = _buffers(bounds, n)
    for start, end in bounds:
        block = np.matmul(q[start:end], g.T, out=scores[: end - start])
        partner = np.diagonal(block[:, start:end]).copy()
        ranks[start:end] = 1 + _row_ahead(block, start, partner, before, after, mask)
    return ranks


def paired_ranks(
    image_vectors: np.ndarray,
    text_vectors: np.ndarray,
    *,
    chunk: int | None = None,
    ties: TieRule = "index",
) -> tuple[np.ndarray, np.ndarray]:
    """(i2t ranks, t2i ranks) from one pass over S = image @ text.T (see the module notes).

    The t2i counts of a block need every partner score up front, so the diagonal of S is taken
    first from the blocks' square sub-products. Each block then checks it against its own
    diagonal; should BLAS have summed a square product differently, t2i is recounted from
    column blocks against the diagonal of the row blocks.
    """
    images, texts = _vector_pair(image_vectors, text_vectors)
    before, after = _compare_ops(ties)
    n = images.shape[0]
    bounds = block_bounds(n, chunk)
    diagonal = _square_diagonal(images, texts, bounds)
    exact = np.empty_like(diagonal)
    i2t = np.empty(n, dtype=np.int64)
    t2i_ahead = np.zeros(n, dtype=np.int64)
    scores, mask = _buffers(bounds, n)
    for start, end in bounds:
        block = np.matmul(images[start:end], texts.T, out=scores[: end - start])
        exact[start:end] = np.diagonal(block[:, start:end])
        i2t[start:end] = 1 + _row_ahead(block, start, exact[start:end], before, after, mask)
        t2i_ahead += _column_ahead(block, start, diagonal, before, after, mask)
    if not np.array_equal(exact, diagonal):
        return i2t, _column_ranks(images, texts, exact, bounds, before, after)
    return i2t, 1 + t2i_ahead


def paired_metrics(
    image_vectors: np.ndarray,
    text_vectors: np.ndarray,
    *,
    chunk: int | None = None,
    ties: TieRule = "index",
) -> PairedMetrics:
    """Both directions' metrics; row i of each array is pair i (L2-normalised embeddings)."""
    i2t, t2i = paired_ranks(image_vectors, text_vectors, chunk=chunk, ties=ties)
    return PairedMetrics(i2t=direction_metrics(i2t), t2i=direction_metrics(t2i), ties=ties)


# ----------------------------------------------------------------------------- counting helpers


def _row_ahead(
    block: np.ndarray, start: int, partner: np.ndarray, before: Compare, after: Compare, mask: np.ndarray
) -> np.ndarray:
    """Per row of `block` (queries start.., partner of row r in column start + r): the number
    of columns ranking ahead of the partner. Each score is compared once."""
    rows, n = block.shape
    end = start + rows
    score = partner[:, None]
    ahead = np.zeros(rows, dtype=np.int64)
    if start:
        ahead += _count(before(block[:, :start], score, out=mask[:rows, :start]), axis=1)
    if end < n:
        ahead += _count(after(block[:, end:], score, out=mask[:rows, end:]), axis=1)
    square = block[:, start:end]
    earlier = np.tri(rows, k=-1, dtype=bool)  # column index below the row's own
    square_ahead = np.where(earlier, before(square, score), after(square, score))
    np.fill_diagonal(square_ahead, False)
    return ahead + _count(square_ahead, axis=1)


def _square_diagonal(images: np.ndarray, texts: np.ndarray, bounds: Sequence[tuple[int, int]]) -> np.ndarray:
    """The diagonal of S from each block's square sub-product, before the blocks are computed."""
    return np.concatenate([np.diagonal(images[s:e] @ texts[s:e].T) for s, e in bounds])


def _column_ahead(
    block: np.ndarray, start: int, partner: np.ndarray, before: Compare, after: Compare, mask: np.ndarray
) -> np.ndarray:
    """Per column j (a caption query, partner image row j): how many of the block's rows
    (images start..) rank ahead of the partner, given every column's partner score."""
    rows, n = block.shape
    end = start + rows
    ahead = np.zeros(n, dtype=np.int64)
    if start:  # these columns' partners come before the block: its rows are after them
        ahead[:start] = _count(after(block[:, :start], partner[:start], out=mask[:rows, :start]), axis=0)
    if end < n:
        ahead[end:] = _count(before(block[:, end:], partner[end:], out=mask[:rows, end:]), axis=0)
    square = block[:, start:end]
    score = partner[start:end]
    earlier = np.tri(rows, k=-1, dtype=bool).T  # row index below the column's own
    square_ahead = np.where(earlier, before(square, score), after(square, score))
    np.fill_diagonal(square_ahead, False)
    ahead[start:end] = _count(square_ahead, axis=0)
    return ahead


def _column_ranks(
    images: np.ndarray,
    texts: np.ndarray,
    partner: np.ndarray,
    bounds: Sequence[tuple[int, int]],
    before: Compare,
    after: Compare,
) -> np.ndarray:
    """t2i ranks from column blocks of S (image @ text[block].T), read as caption rows."""
    n = images.shape[0]
    ranks = np.empty(n, dtype=np.int64)
    _, mask = _buffers(bounds, n)
    for start, end in bounds:
        block = (images @ texts[start:end].T).T
        ranks[start:end] = 1 + _row_ahead(block, start, partner[start:end], before, after, mask)
    return ranks


def _buffers(bounds: Sequence[tuple[int, int]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """A score block and a mask for the largest block, reused: no page faults per block."""
    rows = max(end - start for start, end in bounds)
    return np.empty((rows, n), dtype=np.float32), np.empty((rows, n), dtype=bool)


def _count(mask: np.ndarray, axis: int) -> np.ndarray:
    # Summing the bytes is about twice as fast as np.count_nonzero along an axis.
    return np.add.reduce(mask.view(np.uint8), axis=axis, dtype=np.int64)


def _compare_ops(ties: TieRule) -> tuple[Compare, Compare]:
    if ties not in _TIE_COMPARE:
        raise ValueError(f"unknown tie rule {ties!r}; expected one of {TIE_RULES}")
    return _TIE_COMPARE[ties]


def _vector_pair(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays as C-contiguous float32 (the reference's dtype), checked to pair up."""
    a = np.ascontiguousarray(first, dtype=np.float32)
    b = np.ascontiguousarray(second, dtype=np.float32)
    if a.ndim != 2 or a.shape != b.shape or a.shape[0] == 0:
        raise ValueError(f"expected two non-empty (n, d) arrays of one shape, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("vectors contain NaN or infinity, which have no rank")
    return a, b

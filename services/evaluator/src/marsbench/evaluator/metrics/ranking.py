"""Ranking a gallery by score with the project's deterministic tie rule.

The reference sorts by score with an unstable sort, so the order of exactly tied scores is
arbitrary there. The project breaks ties by image name ascending (PROTOCOL.md, Task 2), which
makes every ranking reproducible; parity with the reference can differ only on exact ties.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def rank_order(names: Sequence[str], scores: np.ndarray, *, decimals: int | None = None) -> np.ndarray:
    """Indices into `names` from best to worst: score descending, then name ascending.

    `decimals` rounds the scores first (the reference rounds similarities to 6 decimals before it
    sorts, which turns near-ties into ties); None ranks the scores as given.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or values.shape[0] != len(names):
        raise ValueError(f"expected one score per name: {len(names)} names, scores of shape {values.shape}")
    if np.isnan(values).any():
        raise ValueError("scores contain NaN, which has no rank")
    if decimals is not None:
        values = np.round(values, decimals)
    # An object array keeps Python's str ordering exactly (a fixed-width unicode array would
    # drop trailing NUL characters). np.lexsort sorts by its last key first.
    keys = np.empty(len(names), dtype=object)
    keys[:] = list(names)
    return np.lexsort((keys, -values))


def rank_by_score(names: Sequence[str], scores: np.ndarray, *, decimals: int | None = None) -> list[str]:
    """`names` from best to worst: score descending, ties broken by name ascending."""
    order = rank_order(names, scores, decimals=decimals)
    return [names[i] for i in order.tolist()]

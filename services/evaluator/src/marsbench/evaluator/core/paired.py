"""Paired image-text retrieval evaluation: the rank of each pair's true partner, both ways."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marsbench.evaluator.core.timing import PhaseTimer
from marsbench.evaluator.metrics.paired import PairedMetrics, paired_metrics
from marsbench.store import VectorStore
from marsbench.tasks.paired import PAIRED

TOP_K = 10
# Rows follow the sample keys' order (for img2dataset shards, the order the reader yields them);
# a partner tied with other items ranks behind those with a smaller row index.
TIE_RULE = "score descending; on an exact tie, the item earlier in sample-key order ranks first"
_SEARCH_BATCH = 256


@dataclass(frozen=True)
class PairedOutcome:
    metrics: PairedMetrics
    # The same metrics with every tie resolved for / against the partner: where they differ from
    # `metrics`, exact score ties (e.g. duplicate captions) make the numbers order-dependent, and the
    # reference's own order there depends on its data loader and numpy's CPU dispatch.
    tie_bounds: dict[str, PairedMetrics]
    keys: list[str]
    top_lists: dict[str, dict[str, list[str]]] | None

    def tied_partners(self) -> int:
        best, worst = self.tie_bounds["ties_optimistic"], self.tie_bounds["ties_pessimistic"]
        return int((best.i2t_ranks != worst.i2t_ranks).sum() + (best.t2i_ranks != worst.t2i_ranks).sum())


def load_pairs(store: VectorStore, collection: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every pair's key, image vector and text vector, in sample-key order."""
    points = sorted(store.scroll(collection, with_vectors=True), key=lambda p: str(p.payload["key"]))
    keys = [str(p.payload["key"]) for p in points]
    if not points:
        return keys, np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    images = np.stack([p.vectors[PAIRED.image_vector] for p in points]).astype(np.float32)
    texts = np.stack([p.vectors[PAIRED.text_vector or "text"] for p in points]).astype(np.float32)
    return keys, images, texts


def top_lists(
    store: VectorStore, collection: str, keys: list[str], images: np.ndarray, texts: np.ndarray
) -> dict[str, dict[str, list[str]]]:
    """Each query's top 10 partners by key, from the store: images against captions and back."""
    out: dict[str, dict[str, list[str]]] = {"i2t": {}, "t2i": {}}
    for direction, queries, using in (("i2t", images, PAIRED.text_vector or "text"), ("t2i", texts, "image")):
        for start in range(0, len(keys), _SEARCH_BATCH):
            block = queries[start : start + _SEARCH_BATCH]
            results = store.search_batch(collection, block, using=using, limit=TOP_K, exact=True)
            for key, hits in zip(keys[start : start + _SEARCH_BATCH], results, strict=True):
                out[direction][key] = [str(hit.payload["key"]) for hit in hits]
    return out


def evaluate_paired(
    store: VectorStore, *, collection: str, with_top_lists: bool, timer: PhaseTimer | None = None
) -> PairedOutcome:
    """`timer`, when given, times the phases read_collection (both sides' vectors), metrics (the
    exhaustive rankings) and, with top lists, search. No query is embedded: both sides come from
    the store."""
    timer = timer or PhaseTimer()
    with timer.phase("read_collection"):
        keys, images, texts = load_pairs(store, collection)
    if not keys:
        raise ValueError(f"collection {collection!r} holds no pairs")
    with timer.phase("metrics"):
        metrics = paired_metrics(images, texts)
        bounds = {
            "ties_optimistic": paired_metrics(images, texts, ties="optimistic"),
            "ties_pessimistic": paired_metrics(images, texts, ties="pessimistic"),
        }
    lists = None
    if with_top_lists:
        with timer.phase("search"):
            lists = top_lists(store, collection, keys, images, texts)
    return PairedOutcome(metrics, bounds, keys, lists)

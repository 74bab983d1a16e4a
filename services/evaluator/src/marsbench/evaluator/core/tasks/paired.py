"""Paired image-text retrieval evaluation: the rank of each pair's true partner, both ways.

The task's facts (payload keys, vector names, caption keys) are the shared library's,
marsbench.tasks.paired; reading both sides' vectors from the store and ranking them is evaluation,
so it lives here. No query is embedded: both sides come from the collection.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from marsbench.evaluator.core.curves import paired_curves
from marsbench.evaluator.core.errors import InvalidRun
from marsbench.evaluator.core.tasks.base import PARITY, RunContext, TaskResult
from marsbench.evaluator.core.timing import PhaseTimer
from marsbench.evaluator.metrics.paired import PairedMetrics, paired_metrics
from marsbench.files import write_text_atomic
from marsbench.schemas.jobs import TaskName
from marsbench.schemas.runs import PairedSettings, RunCreate
from marsbench.store import VectorStore
from marsbench.tasks.paired import DEFAULT_CAPTION_KEY, KEY_FIELD, PAIRED

TOP_K = 10
# Rows follow the sample keys' order (for img2dataset shards, the order the reader yields them);
# a partner tied with other items ranks behind those with a smaller row index.
TIE_RULE = "score descending; on an exact tie, the item earlier in sample-key order ranks first"
SIMILARITY = "float32 inner product of L2-normalised vectors"
_SEARCH_BATCH = 256
TEXT_VECTOR = PAIRED.text_vector or "text"

TopLists = dict[str, dict[str, list[str]]]


@dataclass(frozen=True)
class PairedOutcome:
    metrics: PairedMetrics
    # The same metrics with every tie resolved for / against the partner: where they differ from
    # `metrics`, exact score ties (e.g. duplicate captions) make the numbers order-dependent, and the
    # reference's own order there depends on its data loader and numpy's CPU dispatch.
    tie_bounds: dict[str, PairedMetrics]
    keys: list[str]
    top_lists: TopLists | None

    def tied_partners(self) -> int:
        best, worst = self.tie_bounds["ties_optimistic"], self.tie_bounds["ties_pessimistic"]
        return int((best.i2t_ranks != worst.i2t_ranks).sum() + (best.t2i_ranks != worst.t2i_ranks).sum())


@dataclass(frozen=True, kw_only=True)
class PairedResult(TaskResult):
    settings: PairedSettings


def load_pairs(store: VectorStore, collection: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every pair's key, image vector and text vector, in sample-key order."""
    points = sorted(store.scroll(collection, with_vectors=True), key=lambda p: str(p.payload[KEY_FIELD]))
    keys = [str(p.payload[KEY_FIELD]) for p in points]
    if not points:
        return keys, np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    images = np.stack([p.vectors[PAIRED.image_vector] for p in points]).astype(np.float32)
    texts = np.stack([p.vectors[TEXT_VECTOR] for p in points]).astype(np.float32)
    return keys, images, texts


def top_lists(
    store: VectorStore, collection: str, keys: list[str], images: np.ndarray, texts: np.ndarray
) -> TopLists:
    """Each query's top 10 partners by key, from the store: images against captions and back."""
    out: TopLists = {"i2t": {}, "t2i": {}}
    for direction, queries, using in (("i2t", images, TEXT_VECTOR), ("t2i", texts, PAIRED.image_vector)):
        for start in range(0, len(keys), _SEARCH_BATCH):
            block = queries[start : start + _SEARCH_BATCH]
            results = store.search_batch(collection, block, using=using, limit=TOP_K, exact=True)
            for key, hits in zip(keys[start : start + _SEARCH_BATCH], results, strict=True):
                out[direction][key] = [str(hit.payload[KEY_FIELD]) for hit in hits]
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


def tie_note(tied: int) -> list[str]:
    """The note of a run whose partners tie exactly with other items (none when none do)."""
    if not tied:
        return []
    return [
        f"{tied} query partner(s) tie exactly with other items (e.g. duplicate captions); their "
        "ranks depend on tie order, which the reference leaves to its loader's row order and numpy's "
        "sort: compare with the reference within variants ties_optimistic..ties_pessimistic"
    ]


class PairedEvaluation:
    """Task 1 through the common interface (`TaskEvaluation`); with `top_lists`, each query's top
    10 partners are written beside the record (`<run id>.top10.json`)."""

    @property
    def task(self) -> TaskName:
        return TaskName.PAIRED

    def evaluate(self, context: RunContext, request: RunCreate) -> PairedResult:
        try:
            outcome = evaluate_paired(
                context.store,
                collection=context.collection,
                with_top_lists=request.top_lists,
                timer=context.timer,
            )
        except ValueError as exc:
            raise InvalidRun(str(exc)) from exc
        metrics = outcome.metrics.as_dict()
        with context.timer.phase("curves"):
            curves = paired_curves(outcome.metrics)
        artifacts = {}
        if outcome.top_lists is not None:
            artifacts["top_lists"] = f"{context.run_id}.top{TOP_K}.json"
            write_text_atomic(context.runs_dir / artifacts["top_lists"], json.dumps(outcome.top_lists))
        variants = {PARITY: metrics} | {name: m.as_dict() for name, m in outcome.tie_bounds.items()}
        return PairedResult(
            caption_key=request.caption_key or DEFAULT_CAPTION_KEY,
            metrics=metrics,
            variants=variants,
            curves=curves,
            notes=tie_note(outcome.tied_partners()),
            artifacts=artifacts,
            settings=PairedSettings(tie_rule=TIE_RULE, similarity=SIMILARITY),
            counts={"pairs": len(outcome.keys)},
        )

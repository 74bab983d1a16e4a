"""Landform retrieval evaluation: a text query per class ranks every indexed image.

The task's facts (payload keys, prompt templates, score rounding, the ensembled query) are the
shared library's, marsbench.tasks.landform; embedding the queries and ranking the collection need
the encoder port and the store, so they live here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from marsbench.evaluator.core.errors import InvalidRun
from marsbench.evaluator.core.ports import QueryEncoder
from marsbench.evaluator.core.tasks.base import PARITY, RunContext, TaskResult
from marsbench.evaluator.core.timing import PhaseTimer
from marsbench.evaluator.metrics.landform import LandformMetrics, landform_metrics
from marsbench.evaluator.metrics.ranking import rank_by_score
from marsbench.schemas.jobs import TaskName
from marsbench.schemas.runs import LandformSettings, RunCreate
from marsbench.store import VectorStore
from marsbench.tasks.landform import (
    LABEL_FIELD,
    LANDFORM,
    NAME_FIELD,
    PROMPT_TEMPLATES,
    SCORE_DECIMALS,
    class_prompts,
    ensemble_query,
)

# Parity: the reference rounds similarities to 6 decimals before sorting, so scores equal at that
# precision are ties; it leaves their order to an unstable sort, we break them by image name.
TIE_RULE = f"score rounded to {SCORE_DECIMALS} decimals descending, then image name ascending"

RANDOM_SHUFFLES = 20


@dataclass(frozen=True)
class LandformOutcome:
    metrics: LandformMetrics
    chance: dict[str, float]
    n_images: int
    classes: list[str]


@dataclass(frozen=True, kw_only=True)
class LandformResult(TaskResult):
    settings: LandformSettings


def chance_metrics(
    names: list[str], relevant: dict[str, set[str]], *, max_k: int | None, shuffles: int = RANDOM_SHUFFLES
) -> dict[str, float]:
    """What a random ranking scores: the mean over seeded shuffles, for orientation beside results."""
    rng = np.random.default_rng(0)
    totals: dict[str, float] = {}
    for _ in range(shuffles):
        order = [names[i] for i in rng.permutation(len(names))]
        scores = landform_metrics(dict.fromkeys(relevant, order), relevant, max_k=max_k).as_dict()
        for key, value in scores.items():
            totals[key] = totals.get(key, 0.0) + value / shuffles
    return totals


def build_class_queries(
    encoder: QueryEncoder, model: str, classes: list[str], *, instruction: str | None = None
) -> np.ndarray:
    """One ensembled, normalised text query per class, in `classes` order. Each class's prompts go
    in one request of their own, as the reference batches them: for MLLM embedders whose pooling
    sees padding, the batch a prompt is embedded in is part of the protocol."""
    return np.stack(
        [
            ensemble_query(encoder.embed_texts(model, class_prompts(name), instruction=instruction))
            for name in classes
        ]
    )


def evaluate_landform(
    store: VectorStore,
    encoder: QueryEncoder,
    *,
    collection: str,
    model: str,
    max_k: int | None,
    instruction: str | None = None,
    timer: PhaseTimer | None = None,
) -> LandformOutcome:
    """`timer`, when given, times the phases read_collection, embed_queries, search and metrics."""
    timer = timer or PhaseTimer()
    names_by_id: dict[str, str] = {}
    relevant: dict[str, set[str]] = defaultdict(set)
    with timer.phase("read_collection"):
        for point in store.scroll(collection):
            name, label = str(point.payload[NAME_FIELD]), str(point.payload[LABEL_FIELD])
            names_by_id[point.id] = name
            relevant[label].add(name)
    classes = sorted(relevant)
    if not classes:
        return LandformOutcome(landform_metrics({}, {}), {}, 0, [])
    with timer.phase("embed_queries"):
        queries = build_class_queries(encoder, model, classes, instruction=instruction)
    with timer.phase("search"):
        # Every image is ranked (the reference's default), best first; ties are re-broken by name below.
        results = store.search_batch(
            collection,
            queries,
            using=LANDFORM.image_vector,
            limit=len(names_by_id),
            exact=True,
            with_payload=False,
        )
    with timer.phase("metrics"):
        rankings = {}
        for name, hits in zip(classes, results, strict=True):
            hit_names = [names_by_id[hit.id] for hit in hits]
            scores = np.array([hit.score for hit in hits], dtype=np.float64)
            rankings[name] = rank_by_score(hit_names, scores, decimals=SCORE_DECIMALS)
        metrics = landform_metrics(rankings, relevant, max_k=max_k)
        chance = chance_metrics(sorted(names_by_id.values()), relevant, max_k=max_k)
    return LandformOutcome(metrics, chance, len(names_by_id), classes)


class LandformEvaluation:
    """Task 2 through the common interface (`TaskEvaluation`)."""

    @property
    def task(self) -> TaskName:
        return TaskName.LANDFORM

    def evaluate(self, context: RunContext, request: RunCreate) -> LandformResult:
        outcome = evaluate_landform(
            context.store,
            context.encoder,
            collection=context.collection,
            model=request.model,
            max_k=request.max_k,
            instruction=request.instruction,
            timer=context.timer,
        )
        if not outcome.classes:
            raise InvalidRun(f"collection {context.collection!r} holds no labelled images")
        metrics = outcome.metrics.as_dict()
        return LandformResult(
            metrics=metrics,
            variants={PARITY: metrics},
            per_class=outcome.metrics.per_class_table(),
            chance=outcome.chance,
            settings=LandformSettings(
                templates=list(PROMPT_TEMPLATES), max_k=request.max_k, tie_rule=TIE_RULE
            ),
            counts={"images": outcome.n_images, "classes": len(outcome.classes)},
        )

"""Global geo-localization evaluation: one query (text, image or hybrid) for one landform.

The task's facts (tile payload, defaults, score rounding, how text, image and hybrid queries are
formed from embeddings) are the shared library's, marsbench.tasks.geo; embedding the query through
the encoder port, searching the store (or the warm in-memory index), the coverage curves and the
map are evaluation, so they live here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from marsbench.datasets.errors import DatasetError
from marsbench.datasets.geo import IMAGE_QUERIES_DIR, ground_truth_path, load_ground_truth, query_images
from marsbench.datasets.records import SkipLog
from marsbench.evaluator.core.curves import geo_curves
from marsbench.evaluator.core.errors import InvalidRun
from marsbench.evaluator.core.maps import draw_geo_map
from marsbench.evaluator.core.ports import QueryEncoder
from marsbench.evaluator.core.tasks.base import PARITY, RunContext, TaskResult
from marsbench.evaluator.core.timing import PhaseTimer
from marsbench.evaluator.core.warm_index import ORDER_RULE as WARM_ORDER_RULE
from marsbench.evaluator.core.warm_index import WarmIndexCache
from marsbench.evaluator.metrics.geo import GeoCurve, exact_curve, parity_curve
from marsbench.schemas.jobs import TaskName
from marsbench.schemas.runs import GeoSettings, QueryMode, RunCreate
from marsbench.store import Hit, VectorStore
from marsbench.tasks.geo import (
    GEO,
    SCORE_DECIMALS,
    geo_prompts,
    hybrid_query,
    image_query,
    text_query,
    tile_lonlat,
)

# The reference rounds similarities to 6 decimals and sorts them with an unstable sort, which in
# practice keeps faiss's order within a tie (raw score, then the later dataset position first).
# We sort stably on rounded scores over Qdrant's order: identical whenever no tie group straddles a
# grid k before full recall or at the best k (docs/parity.md measures when that happens).
ORDER_RULE = f"score rounded to {SCORE_DECIMALS} decimals descending, search-engine order within ties"

# The metric variants beside parity: every k, planar; every k, on the sphere.
EXACT = "exact"
EXACT_GREAT_CIRCLE = "exact_great_circle"


@dataclass(frozen=True)
class GeoQuery:
    vector: np.ndarray
    prompts: list[str]
    query_images: list[str]


@dataclass(frozen=True)
class GeoOutcome:
    curves: dict[str, GeoCurve]  # by variant name, parity first
    ranked_lonlat: np.ndarray
    gt_lonlat: np.ndarray
    query: GeoQuery
    skipped_gt_rows: list[str]
    order_rule: str = ORDER_RULE


@dataclass(frozen=True)
class GeoMap:
    """What the run's map shows: the retrieved tiles up to the best k (hit or not) and the
    catalogue sites (covered or not), in lon/lat degrees."""

    tiles_lonlat: np.ndarray
    tile_hit: np.ndarray
    gt_lonlat: np.ndarray
    gt_covered: np.ndarray
    title: str


@dataclass(frozen=True, kw_only=True)
class GeoResult(TaskResult):
    settings: GeoSettings
    map: GeoMap

    @property
    def query_images(self) -> list[str]:
        return self.settings.query_images


def build_geo_query(
    encoder: QueryEncoder, model: str, dataset_dir: Path, request: RunCreate, *, roots: Sequence[Path] = ()
) -> GeoQuery:
    landform, mode = request.landform or "", request.query_mode
    prompts: list[str] = []
    names: list[str] = []
    text = images = None
    if mode in (QueryMode.TEXT, QueryMode.HYBRID):
        prompts = geo_prompts(landform)
        text = text_query(encoder.embed_texts(model, prompts, instruction=request.instruction))
    if mode in (QueryMode.IMAGE, QueryMode.HYBRID):
        try:
            files = query_images(dataset_dir, landform, roots=roots)
        except DatasetError as exc:
            raise InvalidRun(str(exc)) from exc
        if not files:
            raise InvalidRun(
                f"no query images for {landform!r} under {dataset_dir}/{IMAGE_QUERIES_DIR}/{landform}/"
            )
        names = [name for name, _ in files]
        images = encoder.embed_images(model, [data for _, data in files], names)
    if mode is QueryMode.TEXT and text is not None:
        vector = text
    elif mode is QueryMode.IMAGE and images is not None:
        vector = image_query(images)
    elif text is not None and images is not None:
        vector = hybrid_query(text, images, mix_ratio=request.mix_ratio, temperature=request.temperature)
    else:
        raise InvalidRun(f"unsupported query mode {mode!r}")
    return GeoQuery(vector=vector, prompts=prompts, query_images=names)


def ranked_locations(hits: list[Hit]) -> np.ndarray:
    """(lon, lat) of the hits in parity order (see ORDER_RULE)."""
    scores = np.round(np.array([hit.score for hit in hits], dtype=np.float64), SCORE_DECIMALS)
    order = np.argsort(-scores, kind="stable")
    lonlat = np.array([tile_lonlat(hit.payload) for hit in hits], dtype=np.float64).reshape(-1, 2)
    return lonlat[order]


def geo_variant_curves(
    ranked: np.ndarray, gt: np.ndarray, *, radius_deg: float, top_k: int
) -> dict[str, GeoCurve]:
    """The three metric variants' curves, parity first."""
    return {
        PARITY: parity_curve(ranked, gt, radius_deg=radius_deg, max_k=top_k),
        EXACT: exact_curve(ranked, gt, radius_deg=radius_deg, max_k=top_k),
        EXACT_GREAT_CIRCLE: exact_curve(
            ranked, gt, radius_deg=radius_deg, max_k=top_k, distance="great_circle"
        ),
    }


def variant_distances(radius_deg: float) -> dict[str, str]:
    """What each variant measures the radius in, as the record's settings state it."""
    return {
        PARITY: "planar (reference map pixels)",
        EXACT: "planar",
        EXACT_GREAT_CIRCLE: f"great circle, {radius_deg} deg of arc on Mars",
    }


def evaluate_geo(
    store: VectorStore,
    encoder: QueryEncoder,
    *,
    collection: str,
    dataset_dir: Path,
    request: RunCreate,
    warm: WarmIndexCache | None = None,
    timer: PhaseTimer | None = None,
    roots: Sequence[Path] = (),
) -> GeoOutcome:
    """`timer`, when given, times the phases read_ground_truth, embed_queries, load_index (the warm
    index, when there is one), search and metrics."""
    timer = timer or PhaseTimer()
    landform = request.landform or ""
    gt_file = ground_truth_path(dataset_dir, landform)
    if not gt_file.is_file():
        raise InvalidRun(f"no ground truth for {landform!r}: {gt_file} does not exist")
    skipped = SkipLog()
    with timer.phase("read_ground_truth"):
        try:
            gt = load_ground_truth(gt_file, skipped, roots=roots)
        except DatasetError as exc:
            raise InvalidRun(str(exc)) from exc
    with timer.phase("embed_queries"):
        query = build_geo_query(encoder, request.model, dataset_dir, request, roots=roots)
    with timer.phase("load_index"):  # the warm in-memory index: built on first use, then cached
        dim = store.collection_info(collection).vectors[GEO.image_vector]
        index = warm.get(store, collection, using=GEO.image_vector, dim=dim) if warm is not None else None
    with timer.phase("search"):
        if index is not None:
            ranked, order_rule = index.ranked_lonlat(query.vector, request.top_k), WARM_ORDER_RULE
        else:
            hits = store.search_batch(
                collection, query.vector[None, :], using=GEO.image_vector, limit=request.top_k, exact=True
            )[0]
            ranked, order_rule = ranked_locations(hits), ORDER_RULE
    with timer.phase("metrics"):
        curves = geo_variant_curves(ranked, gt, radius_deg=request.radius_deg, top_k=request.top_k)
    notes = [f"{s.key}: {s.reason}" for s in skipped.items]
    return GeoOutcome(curves, ranked, gt, query, notes, order_rule)


def geo_map(outcome: GeoOutcome, request: RunCreate) -> GeoMap:
    """The map of a run: the parity curve's best k decides which retrieved tiles it shows."""
    parity = outcome.curves[PARITY]
    return GeoMap(
        tiles_lonlat=outcome.ranked_lonlat[: parity.best.k],
        tile_hit=parity.tile_hit,
        gt_lonlat=outcome.gt_lonlat,
        gt_covered=parity.gt_covered,
        title=f"{request.landform} · {request.query_mode} query · {request.model} · best k={parity.best.k}",
    )


class GeoEvaluation:
    """Task 3 through the common interface (`TaskEvaluation`); the map of the run is written beside
    the record (`<run id>.map.png`)."""

    @property
    def task(self) -> TaskName:
        return TaskName.GEOLOCALIZATION

    def evaluate(self, context: RunContext, request: RunCreate) -> GeoResult:
        outcome = evaluate_geo(
            context.store,
            context.encoder,
            collection=context.collection,
            dataset_dir=Path(request.dataset_dir),
            request=request,
            warm=context.warm,
            timer=context.timer,
            roots=context.roots,
        )
        with context.timer.phase("curves"):
            curves = geo_curves(outcome.curves[PARITY])
        figure = geo_map(outcome, request)
        map_name = f"{context.run_id}.map.png"
        with context.timer.phase("figures"):
            draw_geo_map(
                context.runs_dir / map_name,
                tiles_lonlat=figure.tiles_lonlat,
                tile_hit=figure.tile_hit,
                gt_lonlat=figure.gt_lonlat,
                gt_covered=figure.gt_covered,
                title=figure.title,
            )
        variants = {name: curve.as_dict() for name, curve in outcome.curves.items()}
        return GeoResult(
            landform=request.landform,
            query_mode=request.query_mode,
            metrics=variants[PARITY],
            variants=variants,
            curves=curves,
            artifacts={"map": map_name},
            settings=GeoSettings(
                top_k=request.top_k,
                radius_deg=request.radius_deg,
                distance=variant_distances(request.radius_deg),
                mix_ratio=request.mix_ratio,
                temperature=request.temperature,
                prompts=outcome.query.prompts,
                query_images=outcome.query.query_images,
                order_rule=outcome.order_rule,
            ),
            counts={"retrieved": len(outcome.ranked_lonlat), "gt_points": len(outcome.gt_lonlat)},
            notes=[f"ground truth row skipped: {row}" for row in outcome.skipped_gt_rows],
            map=figure,
        )

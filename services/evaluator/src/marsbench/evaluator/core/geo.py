"""Global geo-localization evaluation: one query (text, image or hybrid) for one landform."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from marsbench.datasets.errors import DatasetError
from marsbench.datasets.geo import ground_truth_path, load_ground_truth, query_images
from marsbench.datasets.records import SkipLog
from marsbench.evaluator.core.errors import InvalidRun
from marsbench.evaluator.core.ports import QueryEncoder
from marsbench.evaluator.core.timing import PhaseTimer
from marsbench.evaluator.core.warm_index import ORDER_RULE as WARM_ORDER_RULE
from marsbench.evaluator.core.warm_index import WarmIndexCache
from marsbench.evaluator.metrics.geo import GeoCurve, exact_curve, parity_curve
from marsbench.schemas.runs import QueryMode, RunCreate
from marsbench.store import Hit, VectorStore
from marsbench.tasks.geo import GEO, LOCATION_FIELD, geo_prompts, hybrid_query, image_query, text_query

# The reference rounds similarities to 6 decimals and sorts them with an unstable sort, which in
# practice keeps faiss's order within a tie (raw score, then the later dataset position first).
# We sort stably on rounded scores over Qdrant's order: identical whenever no tie group straddles a
# grid k before full recall or at the best k (docs/parity.md measures when that happens).
SCORE_DECIMALS = 6
ORDER_RULE = f"score rounded to {SCORE_DECIMALS} decimals descending, search-engine order within ties"


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
                f"no query images for {landform!r} under {dataset_dir}/image_queries/{landform}/"
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
    lonlat = np.array(
        [(hit.payload[LOCATION_FIELD]["lon"], hit.payload[LOCATION_FIELD]["lat"]) for hit in hits],
        dtype=np.float64,
    ).reshape(-1, 2)
    return lonlat[order]


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
    options = {"radius_deg": request.radius_deg, "max_k": request.top_k}
    with timer.phase("metrics"):
        curves = {
            "parity": parity_curve(ranked, gt, **options),
            "exact": exact_curve(ranked, gt, **options),
            "exact_great_circle": exact_curve(ranked, gt, distance="great_circle", **options),
        }
    notes = [f"{s.key}: {s.reason}" for s in skipped.items]
    return GeoOutcome(curves, ranked, gt, query, notes, order_rule)

"""Geo-localization evaluation through Qdrant against the metric functions on the same ranking."""

from pathlib import Path

import numpy as np
import pytest

from marsbench.evaluator.core.errors import InvalidRun
from marsbench.evaluator.core.search import region_filter
from marsbench.evaluator.core.tasks.geo import build_geo_query, evaluate_geo, ranked_locations
from marsbench.evaluator.metrics.geo import parity_curve
from marsbench.schemas.jobs import TaskName
from marsbench.schemas.runs import QueryMode, RunCreate
from marsbench.schemas.search import Region
from marsbench.store import EmbeddedStore, Hit, Point, point_id
from marsbench.tasks.geo import (
    GEO,
    LAT_KEY,
    LOCATION_FIELD,
    LON_KEY,
    NAME_FIELD,
    geo_prompts,
    text_query,
    tile_lonlat,
)
from tests.fakes import FakeEncoder


def fill(store: EmbeddedStore, encoder: FakeEncoder) -> np.ndarray:
    """A 10 x 10 grid of tiles at 0.2-degree corners; scores fall off with distance from (1, 1)."""
    store.ensure_collection(GEO.collection_spec("geo", encoder.dim))
    target = text_query(encoder.embed_texts("m", geo_prompts("yardangs")))
    rng = np.random.default_rng(1)
    points, corners = [], []
    for i in range(10):
        for j in range(10):
            lon, lat = round(0.2 * i, 1), round(0.2 * j, 1)
            closeness = 1.0 / (1.0 + abs(lon - 1.0) + abs(lat - 1.0))
            v = closeness * target + rng.normal(0, 0.05, encoder.dim)
            name = f"E{lon}_N{lat}.png"
            points.append(
                Point(
                    id=point_id(name),
                    vectors={"image": (v / np.linalg.norm(v)).astype(np.float32)},
                    payload={NAME_FIELD: name, LOCATION_FIELD: {LON_KEY: lon, LAT_KEY: lat}},
                )
            )
            corners.append((lon, lat))
    store.upsert("geo", points)
    return np.array(corners)


def request(dataset: Path, mode: QueryMode, **kw: float) -> RunCreate:
    return RunCreate(
        task=TaskName.GEOLOCALIZATION, model="m", dataset_dir=str(dataset), landform="yardangs",
        query_mode=mode, top_k=50, **kw,
    )  # fmt: skip


@pytest.mark.parametrize("mode", list(QueryMode))
def test_geo_evaluation_equals_metrics_on_the_same_ranking(
    tmp_path: Path, geo_dataset: Path, mode: QueryMode
) -> None:
    encoder = FakeEncoder()
    with EmbeddedStore(tmp_path / "q") as store:
        fill(store, encoder)
        outcome = evaluate_geo(
            store, encoder, collection="geo", dataset_dir=geo_dataset, request=request(geo_dataset, mode)
        )
        query = build_geo_query(encoder, "m", geo_dataset, request(geo_dataset, mode))
        hits = store.search_batch("geo", query.vector[None], using="image", limit=50)[0]
    gt = np.array([[1.0, 1.0], [3.0, -2.0]])
    expected = parity_curve(ranked_locations(hits), gt, max_k=50)
    assert outcome.curves["parity"].as_dict() == expected.as_dict()
    assert outcome.gt_lonlat.tolist() == gt.tolist()
    assert len(outcome.skipped_gt_rows) == 1  # "not,a,row" is reported, not used
    assert len(outcome.ranked_lonlat) == 50
    assert set(outcome.curves) == {"parity", "exact", "exact_great_circle"}
    assert outcome.query.query_images == ([] if mode is QueryMode.TEXT else ["q0.png", "q1.png"])


def test_text_query_finds_the_site(tmp_path: Path, geo_dataset: Path) -> None:
    encoder = FakeEncoder()
    with EmbeddedStore(tmp_path / "q") as store:
        fill(store, encoder)
        outcome = evaluate_geo(
            store,
            encoder,
            collection="geo",
            dataset_dir=geo_dataset,
            request=request(geo_dataset, QueryMode.TEXT),
        )
    assert tuple(outcome.ranked_lonlat[0]) == (1.0, 1.0)  # the tile built closest to the query
    assert outcome.curves["parity"].best.recall == 0.5  # (3, -2) lies outside the grid


def test_ranking_rounds_scores_and_keeps_engine_order_within_ties() -> None:
    def hit(score: float, lon: float) -> Hit:
        return Hit(id=str(lon), score=score, payload={LOCATION_FIELD: {LON_KEY: lon, LAT_KEY: 0.0}})

    hits = [hit(0.9000001, 1.0), hit(0.9000004, 2.0), hit(0.8, 3.0)]  # equal at 6 decimals
    assert ranked_locations(hits)[:, 0].tolist() == [1.0, 2.0, 3.0]


def test_missing_ground_truth_or_query_images_is_invalid(tmp_path: Path, geo_dataset: Path) -> None:
    with EmbeddedStore(tmp_path / "q") as store:
        bad = request(geo_dataset, QueryMode.TEXT).model_copy(update={"landform": "dunes"})
        with pytest.raises(InvalidRun, match="no ground truth"):
            evaluate_geo(store, FakeEncoder(), collection="geo", dataset_dir=geo_dataset, request=bad)
    (geo_dataset / "ground_truth" / "dunes.csv").write_text("lon,lat\n0,0\n")
    (geo_dataset / "image_queries" / "dunes").mkdir()
    with pytest.raises(InvalidRun, match="no query images"):
        build_geo_query(
            FakeEncoder(), "m", geo_dataset, bad.model_copy(update={"query_mode": QueryMode.IMAGE})
        )


def test_region_filters_restrict_search(tmp_path: Path) -> None:
    encoder = FakeEncoder()
    with EmbeddedStore(tmp_path / "q") as store:
        fill(store, encoder)
        query = np.ones((1, encoder.dim), dtype=np.float32)
        box = region_filter(Region(bbox=(-0.1, -0.1, 0.5, 0.5)))  # edges between tile corners
        boxed = store.search_batch("geo", query, using="image", limit=100, filter=box)[0]
        assert {tile_lonlat(h.payload) for h in boxed} == {
            (x, y) for x in (0.0, 0.2, 0.4) for y in (0.0, 0.2, 0.4)
        }
        # 20 km on Mars is 0.337 degrees of arc: the corners at 0, 0.2 and 0.283 (the diagonal)
        # degrees from (0, 0) are inside, those at 0.4 degrees are not.
        circle = region_filter(Region(center=(0.0, 0.0), radius_km=20.0))
        near = store.search_batch("geo", query, using="image", limit=100, filter=circle)[0]
        assert {tile_lonlat(h.payload) for h in near} == {
            (0.0, 0.0), (0.2, 0.0), (0.0, 0.2), (0.2, 0.2)
        }  # fmt: skip


def test_region_needs_exactly_one_shape() -> None:
    with pytest.raises(ValueError):
        Region(bbox=(0, 0, 1, 1), center=(0, 0), radius_km=1)
    with pytest.raises(ValueError):
        Region(center=(0, 0))
    with pytest.raises(ValueError):
        Region(bbox=(1, 0, 0, 1))


def test_search_pages_through_the_ranking_without_gaps_or_repeats(tmp_path: Path) -> None:
    from marsbench.evaluator.core.search import search
    from marsbench.schemas.search import SearchRequest

    encoder = FakeEncoder()
    with EmbeddedStore(tmp_path / "q") as store:
        fill(store, encoder)
        whole = search(store, encoder, SearchRequest(collection="geo", model="m", text="yardangs", k=100))
        assert len(whole.hits) == 100 and whole.next_offset is None
        pages, offset = [], 0
        while offset is not None:
            page = search(
                store,
                encoder,
                SearchRequest(collection="geo", model="m", text="yardangs", k=30, offset=offset),
            )
            assert page.offset == offset
            pages.extend(page.hits)
            offset = page.next_offset
        assert [hit.id for hit in pages] == [hit.id for hit in whole.hits]

"""The warm geo index ranks as the engine's exact search does (on data without near-ties; at full
scale the two sum the 1,024 products in different orders, see docs/performance.md), and stays in
step with the collection it mirrors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from marsbench.evaluator.core.tasks.geo import evaluate_geo, ranked_locations
from marsbench.evaluator.core.warm_index import WarmIndex, WarmIndexCache
from marsbench.schemas.runs import QueryMode
from marsbench.store import EmbeddedStore, Point, point_id
from marsbench.tasks.geo import LAT_KEY, LOCATION_FIELD, LON_KEY, NAME_FIELD
from tests.evaluator.test_geo_eval import fill, request
from tests.fakes import FakeEncoder


def test_top_k_matches_the_engine_exact_search(tmp_path: Path) -> None:
    encoder = FakeEncoder()
    with EmbeddedStore(tmp_path / "q") as store:
        fill(store, encoder)
        index = WarmIndex.build(store, "geo", using="image")
        assert index.count == 100 and index.vectors.flags.c_contiguous
        rng = np.random.default_rng(7)
        for _ in range(5):
            query = rng.normal(size=encoder.dim).astype(np.float32)
            query /= np.linalg.norm(query)
            for k in (1, 17, 100, 500):
                hits = store.search_batch("geo", query[None, :], using="image", limit=k, exact=True)[0]
                np.testing.assert_array_equal(index.ranked_lonlat(query, k), ranked_locations(hits))


def test_ties_are_broken_by_point_id(tmp_path: Path) -> None:
    with EmbeddedStore(tmp_path / "q") as store:
        from marsbench.tasks.geo import GEO

        store.ensure_collection(GEO.collection_spec("geo", 4))
        same = np.array([1, 0, 0, 0], dtype=np.float32)
        names = [f"tile{i}.png" for i in range(6)]
        store.upsert(
            "geo",
            [
                Point(
                    id=point_id(n),
                    vectors={"image": same},
                    payload={NAME_FIELD: n, LOCATION_FIELD: {LON_KEY: i, LAT_KEY: 0}},
                )
                for i, n in enumerate(names)
            ],
        )
        ranked = WarmIndex.build(store, "geo", using="image").ranked_lonlat(same, 6)
        by_id = sorted(range(6), key=lambda i: point_id(names[i]))
        assert ranked[:, 0].tolist() == by_id


def test_the_cache_rebuilds_when_the_collection_grows_and_respects_its_budget(tmp_path: Path) -> None:
    encoder = FakeEncoder()
    with EmbeddedStore(tmp_path / "q") as store:
        fill(store, encoder)
        cache = WarmIndexCache(budget_bytes=1 << 30)
        first = cache.get(store, "geo", using="image", dim=encoder.dim)
        assert first is not None and cache.get(store, "geo", using="image", dim=encoder.dim) is first
        vector = np.ones(encoder.dim, dtype=np.float32) / np.sqrt(encoder.dim)
        extra = Point(
            id=point_id("extra"),
            vectors={"image": vector},
            payload={NAME_FIELD: "extra", LOCATION_FIELD: {LON_KEY: 9.0, LAT_KEY: 9.0}},
        )
        store.upsert("geo", [extra])
        second = cache.get(store, "geo", using="image", dim=encoder.dim)
        assert second is not None and second is not first and second.count == 101
        assert (
            WarmIndexCache(budget_bytes=100 * encoder.dim * 4).get(
                store, "geo", using="image", dim=encoder.dim
            )
            is None
        )


def test_runs_through_the_warm_index_equal_runs_through_the_engine(tmp_path: Path, geo_dataset: Path) -> None:
    encoder = FakeEncoder()
    with EmbeddedStore(tmp_path / "q") as store:
        fill(store, encoder)
        for mode in QueryMode:
            run = request(geo_dataset, mode)
            engine = evaluate_geo(store, encoder, collection="geo", dataset_dir=geo_dataset, request=run)
            warm = evaluate_geo(
                store,
                encoder,
                collection="geo",
                dataset_dir=geo_dataset,
                request=run,
                warm=WarmIndexCache(1 << 30),
            )
            np.testing.assert_array_equal(warm.ranked_lonlat, engine.ranked_lonlat)
            assert {k: c.as_dict() for k, c in warm.curves.items()} == {
                k: c.as_dict() for k, c in engine.curves.items()
            }
            assert warm.order_rule != engine.order_rule


def test_a_sealed_collection_is_memory_mapped_and_ranks_as_the_scroll_built_index(tmp_path: Path) -> None:
    encoder = FakeEncoder()
    with EmbeddedStore(tmp_path / "q") as store:
        fill(store, encoder)
        assert WarmIndex.build(store, "geo", using="image").source == "scroll"  # not sealed yet
        store.seal("geo")
        bulk = WarmIndex.build(store, "geo", using="image")
        scrolled = WarmIndex.build_by_scroll(store, "geo", using="image")
        assert bulk.source == "bulk" and bulk.count == scrolled.count == 100
        assert isinstance(bulk.vectors, np.memmap)  # one copy: the page cache's
        rng = np.random.default_rng(11)
        for _ in range(5):
            query = rng.normal(size=encoder.dim).astype(np.float32)
            query /= np.linalg.norm(query)
            for k in (1, 17, 100, 500):
                np.testing.assert_array_equal(bulk.ranked_lonlat(query, k), scrolled.ranked_lonlat(query, k))

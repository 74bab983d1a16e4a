"""Each task's facts are written once, in marsbench.tasks.<task>, and everything imports them from
there: the run request's defaults, the reader's payload, the collection's indexes. The values are
the protocol's and the stored collections' (PROTOCOL.md; a changed key would orphan every indexed
geo collection), so they are stated here, once, as the tests' own expectation."""

from __future__ import annotations

from marsbench.datasets.geo import GeoTileDataset
from marsbench.schemas.jobs import TaskName
from marsbench.schemas.runs import RunCreate
from marsbench.store.base import PayloadIndex
from marsbench.tasks import geo, landform, paired


def test_the_geo_defaults_are_the_references() -> None:
    assert (geo.DEFAULT_TOP_K, geo.DEFAULT_RADIUS_DEG) == (20_000, 0.5)
    assert (geo.DEFAULT_MIX_RATIO, geo.DEFAULT_TEMPERATURE) == (0.3, 0.1)
    assert geo.SCORE_DECIMALS == landform.SCORE_DECIMALS == 6


def test_a_geo_request_takes_the_tasks_defaults() -> None:
    request = RunCreate(
        task=TaskName.GEOLOCALIZATION, model="m", dataset_dir="/d", landform="yardangs", query_mode="text"
    )
    assert (request.top_k, request.radius_deg, request.mix_ratio, request.temperature) == (
        geo.DEFAULT_TOP_K,
        geo.DEFAULT_RADIUS_DEG,
        geo.DEFAULT_MIX_RATIO,
        geo.DEFAULT_TEMPERATURE,
    )


def test_the_tile_payload_keys_are_those_of_the_stored_collections() -> None:
    payload = geo.tile_payload("E1_0_N2_0.png", "srcA", "srcA/000000.tar", 1.0, 2.0)
    assert payload == {
        "name": "E1_0_N2_0.png",
        "source": "srcA",
        "location": {"lon": 1.0, "lat": 2.0},
        "unit": "srcA/000000.tar",
    }
    assert geo.tile_lonlat(payload) == (1.0, 2.0)
    assert (geo.NAME_FIELD, geo.SOURCE_FIELD, geo.LOCATION_FIELD, geo.UNIT_FIELD) == (
        "name",
        "source",
        "location",
        "unit",
    )


def test_each_task_indexes_its_payload_keys() -> None:
    assert geo.GEO.opener is GeoTileDataset
    assert dict(geo.GEO.payload_indexes) == {
        geo.LOCATION_FIELD: PayloadIndex.GEO,
        geo.SOURCE_FIELD: PayloadIndex.KEYWORD,
        geo.NAME_FIELD: PayloadIndex.KEYWORD,
    }
    assert dict(landform.LANDFORM.payload_indexes) == {
        "label": PayloadIndex.KEYWORD,
        "name": PayloadIndex.KEYWORD,
    }
    assert (landform.LABEL_FIELD, landform.NAME_FIELD) == ("label", "name")
    assert dict(paired.PAIRED.payload_indexes) == {"key": PayloadIndex.KEYWORD}
    assert (paired.KEY_FIELD, paired.CAPTION_FIELD, paired.PAIRED.text_field) == ("key", "caption", "caption")

"""Issue 17, item 6: hostile input gets a 4xx naming the field, never a 500.

Each case was a 500 before: an over-long path segment reached the file system ("File name too
long"), a NUL reached `Path.resolve()` ("embedded null byte"), a NaN echoed in a validation error could
not be written as JSON, an infinite or off-planet region reached the store's geo filter, and torch's
refusal of a pickled weights file (UnpicklingError) escaped the encoder's error mapping."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from marsbench.encoder.app import create_app as create_encoder
from marsbench.encoder.core.engine import EncoderEngine
from marsbench.encoder.registry import ModelSpec, registered_specs
from marsbench.encoder.settings import EncoderSettings
from marsbench.evaluator.app import create_app as create_evaluator
from marsbench.evaluator.core.runs import RunService
from marsbench.evaluator.settings import EvaluatorSettings
from marsbench.indexer.app import create_app as create_indexer
from marsbench.indexer.settings import IndexerSettings
from marsbench.store import CollectionSpec, PayloadIndex, Point
from marsbench.store.naming import point_id
from marsbench.tasks.geo import LAT_KEY, LOCATION_FIELD, LON_KEY
from tests.conftest import write_random_open_clip
from tests.fakes import DIM, FakeEncoder, unit_vector

GEO = "geolocalization__fake__hostile"
LONG = "a" * 300  # one path segment over the file system's 255-byte limit


@pytest.fixture
def evaluator(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_evaluator(EvaluatorSettings(data_dir=tmp_path / "state"))) as client:
        app: Any = client.app
        # Searches and runs embed their queries without an encoder service.
        app.state.encoder = FakeEncoder()
        store = app.state.store
        app.state.runs = RunService(store, app.state.encoder, tmp_path / "runs")
        store.ensure_collection(CollectionSpec(GEO, {"image": DIM}, {LOCATION_FIELD: PayloadIndex.GEO}))
        points = [
            Point(
                point_id(f"t{i}"),
                {"image": unit_vector(f"t{i}")},
                {LOCATION_FIELD: {LON_KEY: i, LAT_KEY: -i}},
            )
            for i in range(4)
        ]
        store.upsert(GEO, points)
        yield client


@pytest.fixture
def indexer(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(
        create_indexer(IndexerSettings(data_dir=tmp_path / "state", resume_jobs=False))
    ) as client:
        yield client


def _refused(response: Any, field: str) -> dict[str, Any]:
    """A 422 in the services' error body whose message names `field`."""
    assert response.status_code == 422, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["type"] in ("ValidationError", "InvalidJob", "InvalidRun"), body
    assert field in body["message"], body
    return body


# -- names too long for the file system --------------------------------------------------------


def test_an_overlong_run_id_is_a_422_naming_it(evaluator: TestClient) -> None:
    body = _refused(evaluator.get(f"/v1/runs/{LONG}"), "run_id")
    assert body["detail"]["errors"][0]["loc"] == ["path", "run_id"]
    _refused(evaluator.get(f"/v1/runs/{LONG}/artifacts/map.png"), "run_id")
    _refused(evaluator.get(f"/v1/runs/20260101T000000-abcdef/artifacts/{LONG}"), "name")


def test_a_run_id_with_other_characters_is_refused_before_the_disk(evaluator: TestClient) -> None:
    _refused(evaluator.get("/v1/runs/..passwd"), "run_id")
    _refused(evaluator.get("/v1/runs/20260101T000000-abcdef/artifacts/map$.png"), "name")
    assert evaluator.get("/v1/runs/20260101T000000-abcdef").status_code == 404  # well-formed, absent


def test_an_overlong_job_id_is_refused(indexer: TestClient) -> None:
    _refused(indexer.get(f"/v1/jobs/{LONG}"), "job_id")
    _refused(indexer.post(f"/v1/jobs/{LONG}/resume"), "job_id")


@pytest.mark.parametrize("route", ["/v1/jobs", "/v1/runs"])
def test_an_overlong_dataset_folder_name_is_a_422_naming_it(
    indexer: TestClient, evaluator: TestClient, tmp_path: Path, route: str
) -> None:
    client = indexer if route == "/v1/jobs" else evaluator
    body = {"task": "landform", "model": "fake", "dataset_dir": str(tmp_path / LONG / "dataset")}
    message = _refused(client.post(route, json=body), "dataset_dir")["message"]
    assert "300 bytes" in message and "at most 255" in message


def test_an_overlong_collection_name_is_a_422(evaluator: TestClient) -> None:
    _refused(evaluator.post("/v1/search", json={"collection": LONG, "model": "m", "text": "x"}), "collection")


# -- NUL and control characters in folders -----------------------------------------------------


@pytest.mark.parametrize("route", ["/v1/jobs", "/v1/runs"])
@pytest.mark.parametrize("folder", ["/data/land\x00form", "/data/landform\n/dataset"])
def test_control_characters_in_dataset_dir_are_a_422(
    indexer: TestClient, evaluator: TestClient, route: str, folder: str
) -> None:
    client = indexer if route == "/v1/jobs" else evaluator
    body = _refused(
        client.post(route, json={"task": "landform", "model": "m", "dataset_dir": folder}), "dataset_dir"
    )
    assert "control character" in body["message"]


# -- regions that are no place on Mars ---------------------------------------------------------


def _search(client: TestClient, region: dict[str, object]) -> Any:
    # Python's JSON writer (and reader) allow NaN and Infinity, as a hostile client may send them.
    body = {"collection": GEO, "model": "fake", "text": "crater", "region": region}
    return client.post("/v1/search", content=json.dumps(body), headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("region", "field"),
    [
        ({"center": [0.0, 0.0], "radius_km": float("nan")}, "radius_km"),
        ({"center": [0.0, 0.0], "radius_km": float("inf")}, "radius_km"),
        ({"center": [0.0, 0.0], "radius_km": 1e300}, "radius_km"),
        ({"center": [float("nan"), 0.0], "radius_km": 10.0}, "center"),
        ({"center": [0.0, 1000.0], "radius_km": 10.0}, "center"),
        ({"bbox": [float("-inf"), -10.0, float("inf"), 10.0]}, "bbox"),
        ({"bbox": [-10.0, -1000.0, 10.0, 1000.0]}, "bbox"),
        ({"bbox": [-400.0, -10.0, 10.0, 10.0]}, "bbox"),
    ],
)
def test_a_region_off_the_planet_is_a_422_naming_the_field(
    evaluator: TestClient, region: dict[str, object], field: str
) -> None:
    body = _refused(_search(evaluator, region), field)
    json.dumps(body, allow_nan=False)  # the echoed input is JSON, NaN included


def test_a_region_on_the_planet_still_searches(evaluator: TestClient) -> None:
    for region in ({"bbox": [-20.0, -20.0, 20.0, 20.0]}, {"center": [1.0, -1.0], "radius_km": 10_000.0}):
        response = _search(evaluator, region)
        assert response.status_code == 200, response.text
        assert len(response.json()["hits"]) == 4
    assert np.isfinite([hit["score"] for hit in response.json()["hits"]]).all()


# -- pickled weights ---------------------------------------------------------------------------


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("unpickled: this would have run code",))


@pytest.fixture
def pickled_model(tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    """An encoder whose registered `evil` model is a local folder whose weights are a pickle."""
    folder = write_random_open_clip(tmp_path / "evil")
    (folder / "open_clip_model.safetensors").unlink()
    weights = folder / "open_clip_pytorch_model.bin"
    weights.write_bytes(pickle.dumps(_Evil()))
    specs = registered_specs()
    specs["evil"] = ModelSpec(name="evil", family="open_clip", source=f"local-dir:{folder}")
    engine = EncoderEngine(EncoderSettings(max_wait_ms=1), specs=specs)
    with TestClient(create_encoder(engine=engine), raise_server_exceptions=False) as client:
        yield client, weights


def test_a_local_model_folder_holding_a_pickle_is_a_422(pickled_model: tuple[TestClient, Path]) -> None:
    client, weights = pickled_model
    for response in (
        client.get("/v1/models/evil", params={"load": "true"}),
        client.post("/v1/embeddings", json={"model": "evil", "input": ["crater"], "modality": "text"}),
        client.get(f"/v1/models/open_clip:ViT-B-32@{weights}", params={"load": "true"}),
    ):
        assert response.status_code == 422, response.text
        assert "evil" in response.json()["error"]["message"], response.text  # names the model or its file


def test_an_unwrapped_unpickling_error_is_still_a_422(
    pickled_model: tuple[TestClient, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HTTP mapping's safety net, for a loader that lets torch's refusal through unwrapped."""
    client, _ = pickled_model
    engine: Any = client.app.state.engine  # type: ignore[attr-defined]

    async def refuse(ref: str, *, load: bool = True) -> None:
        raise pickle.UnpicklingError("Weights only load failed")

    monkeypatch.setattr(engine, "describe", refuse)
    response = client.get("/v1/models/evil", params={"load": "true"})
    assert response.status_code == 422, response.text
    body = response.json()["error"]
    assert (
        body["type"] == "UnsafeWeights" and "'evil'" in body["message"] and "safetensors" in body["message"]
    )

"""Item 2 of issue 9: each input limit answers a clear 4xx naming the limit (and its setting)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import BaseModel, ValidationError

from marsbench.encoder.app import create_app as create_encoder
from marsbench.encoder.settings import EncoderSettings
from marsbench.evaluator.app import create_app as create_evaluator
from marsbench.evaluator.settings import EvaluatorSettings
from marsbench.indexer.app import create_app as create_indexer
from marsbench.indexer.settings import IndexerSettings
from marsbench.schemas.common import StrictModel
from marsbench.schemas.datauri import encode_data_uri
from marsbench.schemas.jobs import JobCreate
from marsbench.schemas.runs import RunCreate
from marsbench.schemas.search import SearchRequest
from tests.conftest import png_bytes
from tests.security.conftest import TINY


def files(blobs: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (f"{i}.png", blob, "image/png")) for i, blob in enumerate(blobs)]


def assert_limit(response: object, status: int, setting: str) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body = response.json()["error"]  # type: ignore[attr-defined]
    assert setting in body["message"], body
    return body


# -- request body size ------------------------------------------------------------------------------


def test_declared_body_over_the_limit_is_413_naming_the_setting(make_encoder: object) -> None:
    client = make_encoder(max_body_mb=0.01)  # type: ignore[operator]  # 10,485 bytes
    big = {"model": TINY, "input": ["x" * 20_000]}
    body = assert_limit(client.post("/v1/embeddings", json=big), 413, "MARSBENCH_ENCODER_MAX_BODY_MB")
    assert body["type"] == "LimitExceeded" and body["detail"]["limit"] == 10_485
    assert client.post("/v1/embeddings", json={"model": TINY, "input": ["x" * 100]}).status_code == 200


def test_streamed_body_over_the_limit_is_413_too(make_encoder: object) -> None:
    """No Content-Length (chunked upload): the bytes are counted as they arrive."""
    client = make_encoder(max_body_mb=0.01)  # type: ignore[operator]

    def chunks() -> Iterator[bytes]:
        yield b'{"model": "tiny-both", "input": ["'
        for _ in range(40):
            yield b"x" * 1000
        yield b'"]}'

    response = client.post("/v1/embeddings", content=chunks(), headers={"Content-Type": "application/json"})
    assert_limit(response, 413, "MARSBENCH_ENCODER_MAX_BODY_MB")


def test_multipart_upload_over_the_limit_is_413(make_encoder: object) -> None:
    client = make_encoder(max_body_mb=0.01)  # type: ignore[operator]
    response = client.post("/v1/embeddings/images", data={"model": TINY}, files=files([b"\0" * 20_000]))
    assert_limit(response, 413, "MARSBENCH_ENCODER_MAX_BODY_MB")


def test_backend_services_limit_bodies(tmp_path: Path) -> None:
    apps: list[FastAPI] = [
        create_indexer(IndexerSettings(data_dir=tmp_path, max_body_mb=0.01)),
        create_evaluator(EvaluatorSettings(data_dir=tmp_path, max_body_mb=0.01)),
    ]
    for app in apps:
        response = TestClient(app).post("/v1/search", content=b"{" + b" " * 20_000 + b"}")
        assert_limit(response, 413, "MARSBENCH_MAX_BODY_MB")


# -- items, texts, images -----------------------------------------------------------------------------


def test_texts_per_request(make_encoder: object) -> None:
    client = make_encoder(max_items_per_request=3)  # type: ignore[operator]
    response = client.post("/v1/embeddings", json={"model": TINY, "input": ["a", "b", "c", "d"]})
    body = assert_limit(response, 413, "MARSBENCH_ENCODER_MAX_ITEMS_PER_REQUEST")
    assert body["detail"] == {"setting": "MARSBENCH_ENCODER_MAX_ITEMS_PER_REQUEST", "limit": 3}
    assert client.post("/v1/embeddings", json={"model": TINY, "input": ["a", "b", "c"]}).status_code == 200


def test_images_per_request_on_both_paths(make_encoder: object) -> None:
    client = make_encoder(max_items_per_request=2)  # type: ignore[operator]
    blobs = [png_bytes(i) for i in range(3)]
    response = client.post("/v1/embeddings/images", data={"model": TINY}, files=files(blobs))
    assert_limit(response, 413, "MARSBENCH_ENCODER_MAX_ITEMS_PER_REQUEST")
    as_json = {"model": TINY, "modality": "image", "input": [encode_data_uri(b) for b in blobs]}
    assert_limit(client.post("/v1/embeddings", json=as_json), 413, "MARSBENCH_ENCODER_MAX_ITEMS_PER_REQUEST")
    ok = client.post("/v1/embeddings/images", data={"model": TINY}, files=files(blobs[:2]))
    assert ok.status_code == 200


def test_characters_per_text(make_encoder: object) -> None:
    client = make_encoder(max_text_chars=50)  # type: ignore[operator]
    response = client.post("/v1/embeddings", json={"model": TINY, "input": ["short", "y" * 51]})
    body = assert_limit(response, 413, "MARSBENCH_ENCODER_MAX_TEXT_CHARS")
    assert "input[1] has 51 characters" in body["message"]
    # Within the limit, the model's tokenizer truncates to its context (16 tokens for the tiny model).
    assert client.post("/v1/embeddings", json={"model": TINY, "input": ["dune " * 10]}).status_code == 200


def test_image_pixels_over_the_limit_are_refused_before_decoding(make_encoder: object) -> None:
    client = make_encoder(max_image_pixels=40 * 40)  # type: ignore[operator]
    response = client.post(
        "/v1/embeddings/images", data={"model": TINY}, files=files([png_bytes(0), png_bytes(1, size=41)])
    )
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "input[1]" in message and "over the limit of 1600" in message


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_is_refused_at_the_default_limit(make_encoder: object) -> None:
    """10,000 x 10,000 one-bit pixels: 100 megapixels in a few kilobytes of PNG."""
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, format="PNG")
    assert len(buffer.getvalue()) < 200_000
    client = make_encoder()  # type: ignore[operator]
    response = client.post("/v1/embeddings/images", data={"model": TINY}, files=files([buffer.getvalue()]))
    assert response.status_code == 422 and "10000x10000" in response.json()["error"]["message"]


# -- unknown fields and bounds ------------------------------------------------------------------------


def _body_models(app: FastAPI) -> set[type[BaseModel]]:
    """The models of every JSON request body in the app's OpenAPI document."""
    schemas = app.openapi()["components"]["schemas"]
    refs = {
        op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        for ops in app.openapi()["paths"].values()
        for op in ops.values()
        if "application/json" in op.get("requestBody", {}).get("content", {})
    }
    assert refs <= set(schemas)
    by_name = {cls.__name__: cls for cls in _subclasses(StrictModel)}
    return {by_name[name] for name in refs}


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    return found | {sub for child in found for sub in _subclasses(child)}


def test_every_json_request_body_is_a_strict_model(tmp_path: Path) -> None:
    apps = [
        create_encoder(EncoderSettings()),
        create_indexer(IndexerSettings(data_dir=tmp_path)),
        create_evaluator(EvaluatorSettings(data_dir=tmp_path)),
    ]
    seen = set().union(*(_body_models(app) for app in apps))  # KeyError: a body that is not strict
    assert {m.__name__ for m in seen} == {
        "EmbeddingRequest",
        "JobCreate",
        "RunCreate",
        "SearchRequest",
        "SnapshotImport",
    }
    for model in _subclasses(StrictModel):
        assert model.model_config.get("extra") == "forbid", model


def test_unknown_fields_are_refused_over_http(make_encoder: object) -> None:
    client = make_encoder()  # type: ignore[operator]
    response = client.post("/v1/embeddings", json={"model": TINY, "input": "dunes", "temperature": 2})
    assert response.status_code == 422 and "temperature" in response.text


GEO = {"task": "geolocalization", "model": "m", "dataset_dir": "/d", "landform": "x", "query_mode": "text"}


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        (SearchRequest, {"collection": "c", "model": "m", "text": "t", "k": 0}),
        (SearchRequest, {"collection": "c", "model": "m", "text": "t", "k": 1001}),
        (SearchRequest, {"collection": "c", "model": "m", "text": "t", "offset": 99_001}),
        (SearchRequest, {"collection": "c", "model": "m", "text": "t" * 10_001}),
        (
            SearchRequest,
            {"collection": "c", "model": "m", "text": "t", "region": {"bbox": [0, 0, 1, 1], "z": 1}},
        ),
        (RunCreate, GEO | {"top_k": 0}),
        (RunCreate, GEO | {"top_k": 1_000_001}),
        (RunCreate, {"task": "landform", "model": "m", "dataset_dir": "/d", "max_k": 0}),
        (RunCreate, {"task": "landform", "model": "m", "dataset_dir": "/d" * 3000}),
        (JobCreate, {"task": "landform", "model": "m", "dataset_dir": "/d", "batch_size": 1001}),
        (JobCreate, {"task": "landform", "model": "m" * 1001, "dataset_dir": "/d"}),
    ],
)
def test_bounds_are_enforced(model: type[BaseModel], fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(fields)

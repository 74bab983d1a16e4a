"""The evaluator's ports over HTTP (issue 16): every client error becomes `UpstreamError` with the
client's message, and the evaluator's API still passes an encoder's 404/422 on as its own 422 (the
refusal travels as data; the core never branches on statuses)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from marsbench import client
from marsbench.evaluator.adapters import HttpIndexingJobs, HttpQueryEncoder, upstream_error
from marsbench.evaluator.app import create_app
from marsbench.evaluator.core.collections import fetch_jobs
from marsbench.evaluator.core.ports import UpstreamError
from marsbench.evaluator.settings import EvaluatorSettings
from marsbench.store import CollectionSpec

UNKNOWN = {
    "error": {
        "message": "unknown model 'nope'; GET /v1/models lists them",
        "type": "UnknownModel",
        "code": "unknown_model",
        "param": "model",
        "detail": {"known": ["marsbench-tiny"]},
    }
}


def answering(status: int, body: object) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, json=body))


def unreachable() -> httpx.MockTransport:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    return httpx.MockTransport(refuse)


def test_a_refusal_keeps_the_clients_message_and_its_answer_as_data() -> None:
    encoder = HttpQueryEncoder(
        client.EncoderClient("http://encoder", transport=answering(404, UNKNOWN), retries=0)
    )
    with pytest.raises(UpstreamError) as caught:
        encoder.embed_texts("nope", ["a crater"])
    error = caught.value
    assert isinstance(error.__cause__, client.ApiError) and str(error) == str(error.__cause__)
    assert error.service == "encoder" and error.refusal is not None
    assert (error.refusal.status, error.refusal.error, error.refusal.param) == (404, "UnknownModel", "model")
    assert error.refusal.detail == {"known": ["marsbench-tiny"]}


def test_an_indexer_that_does_not_answer_is_an_upstream_error_the_core_reports() -> None:
    indexing = HttpIndexingJobs(client.IndexerClient("http://indexer", transport=unreachable(), retries=0))
    with pytest.raises(UpstreamError) as caught:
        indexing.jobs("c")
    assert caught.value.service == "indexer" and caught.value.refusal is None
    assert str(caught.value) == str(caught.value.__cause__) and "no answer from http://indexer" in str(
        caught.value
    )
    jobs, link, message = fetch_jobs(indexing)
    assert (jobs, link) == ([], "unavailable") and message is not None and str(caught.value) in message


def test_every_client_error_is_translated() -> None:
    error = upstream_error(client.MarsbenchError("odd"), "encoder")
    assert str(error) == "odd" and error.refusal is None


@pytest.fixture
def evaluator(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(EvaluatorSettings(data_dir=tmp_path / "state"))) as http:
        app: Any = http.app
        app.state.store.ensure_collection(CollectionSpec("c", {"image": 8}))
        yield http


@pytest.mark.parametrize("status", [404, 422])
def test_the_encoders_refusal_of_a_query_is_the_callers_422(evaluator: TestClient, status: int) -> None:
    app: Any = evaluator.app
    app.state.encoder = HttpQueryEncoder(
        client.EncoderClient("http://encoder", transport=answering(status, UNKNOWN), retries=0)
    )
    response = evaluator.post("/v1/search", json={"collection": "c", "model": "nope", "text": "a crater"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "UnknownModel" and error["param"] == "model"
    assert error["message"] == f"encoder: {UNKNOWN['error']['message']}"
    assert error["detail"] == {"known": ["marsbench-tiny"]}


def test_an_encoder_that_does_not_answer_is_a_bad_gateway(evaluator: TestClient) -> None:
    app: Any = evaluator.app
    app.state.encoder = HttpQueryEncoder(
        client.EncoderClient("http://encoder", transport=unreachable(), retries=0)
    )
    response = evaluator.post("/v1/search", json={"collection": "c", "model": "m", "text": "a crater"})
    assert response.status_code == 502, response.text
    assert "no answer from http://encoder" in response.json()["error"]["message"]

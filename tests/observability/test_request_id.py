"""Request ids: taken or made, echoed, in every log record of the request, forwarded by the client, and
followed from the indexer and the evaluator into the encoder's logs."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from marsbench.cli.stack import LocalStack, StackUrls
from marsbench.client import EncoderClient
from marsbench.encoder.app import create_app as create_encoder
from marsbench.encoder.settings import EncoderSettings
from marsbench.indexer.core.jobs import JobManager
from marsbench.observability import StructuredFormatter, install_log_context
from marsbench.schemas.jobs import JobCreate, JobState, TaskName
from marsbench.store import EmbeddedStore
from marsbench.tracing import REQUEST_ID_HEADER, current_request_id, request_context
from tests.fakes import FakeEncoder


@pytest.fixture(scope="module")
def encoder() -> Iterator[TestClient]:
    with TestClient(create_encoder(EncoderSettings(preload=["marsbench-tiny"], max_wait_ms=1))) as client:
        yield client


def test_a_sane_id_is_kept_and_echoed(encoder: TestClient) -> None:
    response = encoder.get("/healthz", headers={REQUEST_ID_HEADER: "lab-tool:run-42/step.3"})
    assert response.headers[REQUEST_ID_HEADER] == "lab-tool:run-42/step.3"


@pytest.mark.parametrize("sent", [None, "", "x" * 129, "two words", "new\nline", 'quote"d'])
def test_a_missing_or_unsafe_id_is_replaced(encoder: TestClient, sent: str | None) -> None:
    headers = {} if sent is None else {REQUEST_ID_HEADER: sent}
    response = encoder.get("/healthz", headers=headers)
    made = response.headers[REQUEST_ID_HEADER]
    assert made != sent and len(made) == 32 and int(made, 16) >= 0  # a fresh uuid4, hex


def test_error_answers_carry_the_id_too(encoder: TestClient) -> None:
    body = {"model": "no-such-model", "input": "x"}
    response = encoder.post("/v1/embeddings", json=body, headers={REQUEST_ID_HEADER: "err-1"})
    assert response.status_code == 404 and response.headers[REQUEST_ID_HEADER] == "err-1"


def test_every_log_record_of_a_request_carries_its_id(
    encoder: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    encoder.get("/v1/models/marsbench-tiny", headers={REQUEST_ID_HEADER: "log-7"})
    [line] = [r for r in caplog.records if r.name == "marsbench.http" and r.request_id == "log-7"]
    assert line.service == "encoder" and line.status == 200 and line.route == "/v1/models/{ref:path}"
    assert line.duration_ms >= 0
    outside = logging.getLogger("test").makeRecord("test", logging.INFO, __file__, 1, "m", (), None)
    assert outside.request_id is None


def test_structured_formatter_writes_key_values_and_json() -> None:
    install_log_context()
    with request_context("fmt-1", "indexer"):
        record = logging.getLogger("marsbench.x").makeRecord(
            "marsbench.x", logging.WARNING, __file__, 1, "job %s failed", ("j1",), None, extra={"job": "j1"}
        )
    kv = StructuredFormatter("kv").format(record)
    assert 'msg="job j1 failed"' in kv and "request_id=fmt-1" in kv and "service=indexer" in kv
    assert "level=warning" in kv and "job=j1" in kv and "\n" not in kv
    parsed = json.loads(StructuredFormatter("json").format(record))
    assert parsed["request_id"] == "fmt-1" and parsed["msg"] == "job j1 failed" and parsed["job"] == "j1"


def test_the_client_forwards_the_current_request_id() -> None:
    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get(REQUEST_ID_HEADER))
        return httpx.Response(200, json={"status": "ok"})

    with EncoderClient("http://encoder", transport=httpx.MockTransport(answer)) as client:
        client.request("GET", "/healthz")
        with request_context("fwd-1"):
            client.request("GET", "/healthz")
            client.request("GET", "/healthz", headers={REQUEST_ID_HEADER: "explicit"})
    assert seen == [None, "fwd-1", "explicit"]


class _RecordingEncoder(FakeEncoder):
    """Notes the request id each embedding call runs under (they run on the pipeline's threads)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str | None] = set()

    def embed_images(
        self, model: str, images: Sequence[bytes], names: Sequence[str] | None = None
    ) -> np.ndarray:
        self.ids.add(current_request_id())
        return super().embed_images(model, images, names)


def test_an_indexing_job_runs_under_the_request_that_created_it(
    tmp_path: Path, landform_folders: Path
) -> None:
    encoder = _RecordingEncoder()
    with EmbeddedStore(tmp_path / "qdrant") as store:
        jobs = JobManager(store, encoder, tmp_path / "jobs", batch_size=4, in_flight=2)
        with request_context("job-req-1"):
            job = jobs.submit(
                JobCreate(task=TaskName.LANDFORM, model="fake", dataset_dir=str(landform_folders))
            )
        assert jobs.wait(job.id, 30).state is JobState.SUCCEEDED
    assert encoder.ids == {"job-req-1"}


# -- across services, over loopback HTTP --------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackUrls]:
    with LocalStack(data_dir=tmp_path_factory.mktemp("state")) as urls:
        yield urls


def _eventually(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Access lines are written once a response has gone out, on the server's thread: a caller
    can hold the answer a moment before the line exists."""
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.02)
    return check()


def _encoder_lines(caplog: pytest.LogCaptureFixture, request_id: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "marsbench.http" and r.service == "encoder" and r.request_id == request_id
    ]


@pytest.mark.e2e
def test_the_id_follows_indexer_and_evaluator_calls_into_the_encoder(
    stack: StackUrls, landform_folders: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="marsbench.http")
    body = {"task": "landform", "model": "marsbench-tiny", "dataset_dir": str(landform_folders)}
    with httpx.Client(timeout=60) as http:
        created = http.post(f"{stack.indexer}/v1/jobs", json=body, headers={REQUEST_ID_HEADER: "trace-index"})
        assert created.status_code == 202, created.text
        assert created.headers[REQUEST_ID_HEADER] == "trace-index"
        job = created.json()
        for _ in range(300):
            job = http.get(f"{stack.indexer}/v1/jobs/{job['id']}").json()
            if job["state"] not in ("queued", "running"):
                break
            time.sleep(0.1)
        assert job["state"] == "succeeded", job
        # The job's model lookup and its image batches, on the job's and the pipeline's threads.
        wanted = {"/v1/models/{ref:path}", "/v1/embeddings/images"}
        assert _eventually(lambda: wanted <= {r.route for r in _encoder_lines(caplog, "trace-index")})

        search = {"collection": job["collection"], "model": "marsbench-tiny", "text": "a crater", "k": 3}
        found = http.post(f"{stack.evaluator}/v1/search", json=search, headers={REQUEST_ID_HEADER: "trace-s"})
        assert found.status_code == 200, found.text
        assert found.headers[REQUEST_ID_HEADER] == "trace-s"
        assert _eventually(lambda: {r.route for r in _encoder_lines(caplog, "trace-s")} == {"/v1/embeddings"})

        # The evaluator's own line for the same request, under the same id.
        def evaluator_line() -> bool:
            return any(
                r.service == "evaluator" and r.route == "/v1/search"
                for r in caplog.records
                if getattr(r, "request_id", None) == "trace-s"
            )

        assert _eventually(evaluator_line)

"""The encoder port's adapters (issue 16): over HTTP, the client's errors become the port's by what
they mean for a job, keeping the client's message; in process, plain callables become the port.

The HTTP encoder here is a mock transport answering as the real one does: binary rows, or a 422
naming the index of an image it cannot decode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from email.parser import BytesParser
from email.policy import default as email_policy
from pathlib import Path

import httpx
import numpy as np
import pytest

from marsbench import client
from marsbench.datasets.records import ImageRecord, SkipLog
from marsbench.http import status_for
from marsbench.indexer.adapters import HttpEncoder, InProcessEncoder, encoder_error
from marsbench.indexer.api.errors import STATUS
from marsbench.indexer.core.jobs import JobManager, is_transient
from marsbench.indexer.core.pipeline import IndexPipeline, PipelineTarget
from marsbench.indexer.core.ports import EncoderError, ItemRejected, ServiceUnavailable
from marsbench.schemas.embeddings import BINARY_DIM_HEADER, BINARY_ROWS_HEADER
from marsbench.schemas.jobs import JobCreate, JobState, TaskName
from marsbench.store import CollectionSpec, EmbeddedStore
from tests.conftest import png_bytes
from tests.fakes import DIM, FakeEncoder, unit_vector

Handler = Callable[[httpx.Request], httpx.Response]


def _images(request: httpx.Request) -> tuple[list[bytes], list[str]]:
    """The `images` parts of a multipart form, as the encoder reads them."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    form = BytesParser(policy=email_policy).parsebytes(head + request.content)
    parts = [p for p in form.iter_parts() if p.get_param("name", header="content-disposition") == "images"]
    return [bytes(p.get_payload(decode=True)) for p in parts], [str(p.get_filename()) for p in parts]


def _error_body(status: int, kind: str, message: str, detail: dict[str, object] | None) -> httpx.Response:
    error = {"message": message, "type": kind, "code": None, "param": None, "detail": detail}
    return httpx.Response(status, json={"error": error})


def decoding_encoder(request: httpx.Request) -> httpx.Response:
    """POST /v1/embeddings/images as the encoder answers it: rows, or 422 naming a bad image."""
    images, names = _images(request)
    try:
        rows = FakeEncoder().embed_images("fake", images, names)
    except ItemRejected as exc:
        return _error_body(422, "InvalidInput", exc.reason, {"index": exc.index})
    headers = {BINARY_ROWS_HEADER: str(rows.shape[0]), BINARY_DIM_HEADER: str(rows.shape[1])}
    return httpx.Response(200, headers=headers, content=rows.astype("<f4").tobytes())


@pytest.fixture
def http_encoder() -> Iterator[Callable[[Handler], HttpEncoder]]:
    opened: list[HttpEncoder] = []

    def make(handler: Handler) -> HttpEncoder:
        transport = httpx.MockTransport(handler)
        encoder = HttpEncoder(client.EncoderClient("http://encoder", transport=transport, retries=0))
        opened.append(encoder)
        return encoder

    yield make
    for encoder in opened:
        encoder.close()


def records(n: int, bad: set[int]) -> list[ImageRecord]:
    return [
        ImageRecord(
            key=f"img{i}", image=b"garbage" if i in bad else png_bytes(i), payload={"name": f"img{i}"}
        )
        for i in range(n)
    ]


def run_pipeline(
    store: EmbeddedStore, encoder: HttpEncoder | InProcessEncoder, items: list[ImageRecord]
) -> SkipLog:
    store.ensure_collection(CollectionSpec(name="c", vectors={"image": DIM}))
    skips = SkipLog()
    target = PipelineTarget("c", "image", "fake")
    pipeline = IndexPipeline(
        store, encoder, target, batch_size=4, in_flight=1, skips=skips, on_progress=lambda _: None
    )
    pipeline.run(iter(items))
    return skips


def test_over_http_an_image_the_encoder_rejects_by_index_is_skipped_and_the_rest_written(
    store: EmbeddedStore, http_encoder: Callable[[Handler], HttpEncoder]
) -> None:
    skips = run_pipeline(store, http_encoder(decoding_encoder), records(8, bad={1, 6}))
    assert store.count("c") == 6
    assert sorted(item.key for item in skips.items) == ["img1", "img6"]
    # The encoder's own words about the image, without the status line.
    assert all(
        item.reason.startswith("input[") and "cannot decode image" in item.reason for item in skips.items
    )


def _raised(encoder: HttpEncoder) -> EncoderError:
    with pytest.raises(EncoderError) as caught:
        encoder.embed_images("fake", [png_bytes(0)], ["a"])
    return caught.value


@pytest.mark.parametrize(
    ("status", "kind", "detail", "port_error", "transient"),
    [
        (503, "Unavailable", None, ServiceUnavailable, True),  # (re)starting
        (429, "Busy", None, ServiceUnavailable, True),  # its queue is full
        (504, "HTTPError", None, ServiceUnavailable, True),
        (422, "InvalidInput", {"index": 0}, ItemRejected, False),
        (422, "ValidationError", None, ItemRejected, False),  # no index: the whole call is refused
        (404, "UnknownModel", None, EncoderError, False),
        (400, "BadRequest", None, EncoderError, False),
    ],
)
def test_an_error_answer_becomes_the_port_error_it_means_with_the_clients_message(
    http_encoder: Callable[[Handler], HttpEncoder],
    status: int,
    kind: str,
    detail: dict[str, object] | None,
    port_error: type[EncoderError],
    transient: bool,
) -> None:
    error = _raised(http_encoder(lambda _: _error_body(status, kind, "refused", detail)))
    assert type(error) is port_error and is_transient(error) is transient
    assert isinstance(error.__cause__, client.ApiError)
    assert str(error) == str(error.__cause__) == f"{status} {kind}: refused"
    if isinstance(error, ItemRejected):
        assert error.index == (detail or {}).get("index") and error.reason == "refused"


def test_an_encoder_that_does_not_answer_is_unavailable(
    http_encoder: Callable[[Handler], HttpEncoder],
) -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    encoder = http_encoder(refused)
    error = _raised(encoder)
    assert isinstance(error, ServiceUnavailable) and is_transient(error)
    assert isinstance(error.__cause__, client.ServiceUnavailable) and str(error) == str(error.__cause__)
    assert "no answer from http://encoder" in str(error)
    for call in (lambda: encoder.model_info("fake"), lambda: encoder.embed_texts("fake", ["a crater"])):
        with pytest.raises(ServiceUnavailable):
            call()


def test_every_client_error_is_translated() -> None:
    assert type(encoder_error(client.MarsbenchError("odd"))) is EncoderError
    assert type(encoder_error(client.ServiceUnavailable("gone"))) is ServiceUnavailable


def test_the_indexer_api_answers_an_encoder_failure_as_a_bad_gateway() -> None:
    for error in (EncoderError("x"), ServiceUnavailable("x"), ItemRejected("x", index=None)):
        assert status_for(error, STATUS) == 502


# -- in process ---------------------------------------------------------------------------------


def test_an_object_with_the_three_methods_runs_a_job_in_process(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path
) -> None:
    fake = FakeEncoder()
    jobs = JobManager(store, InProcessEncoder.of(fake), tmp_path / "jobs", batch_size=4, in_flight=2)
    job = jobs.submit(JobCreate(task=TaskName.LANDFORM, model="fake", dataset_dir=str(landform_folders)))
    done = jobs.wait(job.id, 60)
    assert done.state is JobState.SUCCEEDED, done.error
    assert (done.done, done.skipped) == (15, 1)  # the corrupt file, rejected by index
    assert fake.images_embedded == 15


def test_plain_callables_returning_lists_become_float32_rows(store: EmbeddedStore) -> None:
    encoder = InProcessEncoder(
        model_info=FakeEncoder().model_info,
        embed_images=lambda model, images, names: [
            unit_vector(data).astype(np.float64).tolist() for data in images
        ],
    )
    rows = encoder.embed_images("fake", [png_bytes(0), png_bytes(1)], ["a", "b"])
    assert rows.dtype == np.float32 and rows.shape == (2, DIM)
    np.testing.assert_allclose(rows[1], unit_vector(png_bytes(1)), atol=1e-6)
    assert run_pipeline(store, encoder, records(5, bad=set())).count == 0 and store.count("c") == 5


def test_in_process_the_port_contract_is_checked() -> None:
    encoder = InProcessEncoder(
        model_info=FakeEncoder().model_info, embed_images=lambda model, images, names: np.zeros((1, DIM))
    )
    with pytest.raises(EncoderError, match=r"fake: 2 inputs embedded as an array of shape \(1, 8\)"):
        encoder.embed_images("fake", [b"a", b"b"], ["a", "b"])
    with pytest.raises(EncoderError, match="embeds no texts"):
        encoder.embed_texts("fake", ["a crater"])

"""Item 4 of issue 9: a full queue answers 429 with Retry-After; a request past its time gets 504
without holding up others; a slow uploader cannot stall a batch."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from marsbench.encoder.adapters.base import TorchEmbedder
from marsbench.encoder.adapters.open_clip import OpenClipModel
from marsbench.encoder.app import create_app
from marsbench.encoder.core.engine import EncoderEngine
from marsbench.schemas.embeddings import BINARY_ROWS_HEADER
from tests.conftest import png_bytes
from tests.security.conftest import TINY, encoder_engine

SLOW_S = 1.5


@pytest.fixture
def text_batches(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every text batch the model runs; a batch holding a text starting 'slow' takes SLOW_S."""
    batches: list[list[str]] = []
    real = OpenClipModel.embed_texts

    def embed_texts(self: OpenClipModel, texts: Sequence[str], *args: Any, **kwargs: Any) -> Any:
        batches.append(list(texts))
        if any(text.startswith("slow") for text in texts):
            time.sleep(SLOW_S)
        return real(self, texts, *args, **kwargs)

    monkeypatch.setattr(OpenClipModel, "embed_texts", embed_texts)
    return batches


def test_full_queue_answers_429_with_retry_after(make_encoder: Any) -> None:
    client = make_encoder(max_queued_items=2)
    response = client.post("/v1/embeddings", json={"model": TINY, "input": ["a", "b", "c"]})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"]["type"] == "Overloaded"
    assert client.post("/v1/embeddings", json={"model": TINY, "input": ["a", "b"]}).status_code == 200


def test_request_past_its_timeout_gets_504_and_others_go_on(
    make_encoder: Any, text_batches: list[list[str]]
) -> None:
    client = make_encoder(request_timeout_s=0.3)
    engine: EncoderEngine = client.app.state.engine

    def post(texts: list[str]) -> tuple[int, dict[str, Any], float]:
        started = time.perf_counter()
        response = client.post("/v1/embeddings", json={"model": TINY, "input": texts})
        return response.status_code, response.json().get("error", {}), time.perf_counter() - started

    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(post, ["slow forward"])
        time.sleep(0.1)  # the slow forward now holds the device
        # Queued behind it, this request times out too; its items must never reach the model.
        queued = pool.submit(post, [f"queued {i}" for i in range(5)])
        probe_started = time.perf_counter()
        assert client.get("/healthz").status_code == 200
        assert client.get("/v1/models").status_code == 200
        assert time.perf_counter() - probe_started < 0.5  # the event loop is never blocked
        for future in (slow, queued):
            status, body, took = future.result()
            assert status == 504, body
            assert body["type"] == "TimedOut" and "MARSBENCH_ENCODER_REQUEST_TIMEOUT_S" in body["message"]
            assert body["detail"]["setting"] == "MARSBENCH_ENCODER_REQUEST_TIMEOUT_S"
            assert took < SLOW_S  # answered at its timeout, not when the forward ended
    time.sleep(SLOW_S)  # let the slow forward finish
    status, _, _ = post(["after"])
    assert status == 200  # the service goes on
    assert not any(text.startswith("queued") for batch in text_batches for text in batch)
    served = next(iter(engine._served.values()))
    assert served.queued() == 0


# -- a slow uploader ---------------------------------------------------------------------------------


@pytest.fixture
def server(tiny_clip_dir: Path) -> Iterator[tuple[str, EncoderEngine]]:
    """The encoder on a real loopback socket, so uploads can be slow on the wire."""
    engine = encoder_engine(tiny_clip_dir)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    uv = uvicorn.Server(uvicorn.Config(create_app(engine=engine), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert uv.started
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", engine
    finally:
        uv.should_exit = True
        thread.join(10)
        sock.close()


def test_a_slow_uploader_cannot_stall_a_batch(
    server: tuple[str, EncoderEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, engine = server
    batch_sizes: list[int] = []
    real = TorchEmbedder.embed_prepared

    def embed_prepared(self: TorchEmbedder, items: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
        batch_sizes.append(len(items))
        return real(self, items, *args, **kwargs)

    monkeypatch.setattr(TorchEmbedder, "embed_prepared", embed_prepared)
    files = [("images", (f"{i}.png", png_bytes(i), "image/png")) for i in range(3)]
    request = httpx.Request("POST", f"{url}/v1/embeddings/images", data={"model": TINY}, files=files)
    body = request.read()
    head = ["POST /v1/embeddings/images HTTP/1.1", f"Host: {request.url.netloc.decode()}"]
    head += [f"{k}: {v}" for k, v in request.headers.items() if k.lower() != "host"]
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as slow:
        slow.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body[: len(body) // 2])
        time.sleep(0.3)  # the slow client is mid-upload, holding half of its three images
        started = time.perf_counter()
        fast = httpx.post(f"{url}/v1/embeddings/images", data={"model": TINY}, files=files[:2], timeout=30)
        assert fast.status_code == 200 and fast.headers[BINARY_ROWS_HEADER] == "2"
        assert time.perf_counter() - started < 5
        assert batch_sizes == [2]  # nothing of the half-sent request reached a batch
        served = next(iter(engine._served.values()))
        assert served.queued() == 0
        slow.sendall(body[len(body) // 2 :])
        slow.settimeout(30)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += slow.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"x-embedding-rows: 3" in answer.lower()
    assert batch_sizes == [2, 3]  # its images went in whole, once they had all arrived

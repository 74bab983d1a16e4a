"""Issue 17, item 8: image decoding is budgeted per request and shared fairly between requests."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import marsbench.encoder.core.engine as engine_module
from marsbench.encoder.core.engine import EncoderEngine
from tests.conftest import png_bytes
from tests.security.conftest import TINY, encoder_engine


def data_uri(blob: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(blob).decode("ascii")


def test_pixels_per_request_are_budgeted_before_decoding(
    make_encoder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 images of 64 Mpx fit the per-image limit and the body limit, yet took 42 s of CPU: the
    request's total pixels are now summed from the headers and refused with a 413 first."""
    decoded: list[int] = []
    real = engine_module.decode_image

    def counted(data: bytes, index: int, **kwargs: Any) -> Image.Image:
        decoded.append(index)
        return real(data, index, **kwargs)

    monkeypatch.setattr(engine_module, "decode_image", counted)
    client = make_encoder(max_request_pixels=3 * 40 * 40)
    blobs = [png_bytes(i) for i in range(4)]  # 40 x 40 each
    files = [("images", (f"{i}.png", blob, "image/png")) for i, blob in enumerate(blobs)]
    answers = [
        client.post(
            "/v1/embeddings", json={"model": TINY, "modality": "image", "input": [data_uri(b) for b in blobs]}
        ),
        client.post("/v1/embeddings/images", data={"model": TINY}, files=files),
    ]
    for answer in answers:
        assert answer.status_code == 413, answer.text
        body = answer.json()["error"]
        assert "MARSBENCH_ENCODER_MAX_REQUEST_PIXELS" in body["message"] and "6400" in body["message"]
        assert body["detail"] == {"setting": "MARSBENCH_ENCODER_MAX_REQUEST_PIXELS", "limit": 4800}
    assert decoded == []  # refused from the headers: nothing was decoded
    fits = client.post("/v1/embeddings/images", data={"model": TINY}, files=files[:3])
    assert fits.status_code == 200 and decoded == [0, 1, 2]


@pytest.mark.anyio
async def test_decoding_is_shared_fairly_between_requests(
    tiny_clip_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request of many large images held the decoding threads until all of them were done; a
    small request behind it waited that long (15 s in the filed case). Images now take turns."""
    order: list[str] = []
    real = engine_module.decode_image
    small = png_bytes(99, size=48)

    def slow(data: bytes, index: int, **kwargs: Any) -> Image.Image:
        order.append("small" if data == small else "big")
        time.sleep(0.03)  # a large image's decode
        return real(data, index, **kwargs)

    monkeypatch.setattr(engine_module, "decode_image", slow)
    engine: EncoderEngine = encoder_engine(tiny_clip_dir, device="cpu", preprocess_workers=1)
    async with engine:
        big = [png_bytes(i) for i in range(12)]
        first = asyncio.create_task(engine.embed_images(TINY, big))
        while not order:  # the big request's decoding has started
            await asyncio.sleep(0.005)
        started = time.perf_counter()
        vectors = await engine.embed_images(TINY, [small])
        waited = time.perf_counter() - started
        assert vectors.shape == (1, 16)
        assert order.index("small") <= 3, order
        assert not first.done() and waited < 0.3
        assert (await first).shape == (12, 16)

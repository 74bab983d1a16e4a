"""Helpers the encoder model tests share: test pictures, the in-process embedding call, a processor
spy, a pinned snapshot in a Hugging Face cache, and the HTTP service with its two embedding routes."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from marsbench.encoder.adapters import EmbeddingModel, RuntimeOptions, load_model
from marsbench.encoder.adapters.base import DEFAULT_PROMPT, PromptOptions
from marsbench.encoder.app import create_app
from marsbench.encoder.core.engine import EncoderEngine
from marsbench.encoder.registry import ModelSpec
from marsbench.encoder.settings import EncoderSettings
from marsbench.schemas.embeddings import BINARY_DIM_HEADER
from tests.conftest import png_bytes

CPU = RuntimeOptions(device="cpu")
REVISION = "0123456789abcdef0123456789abcdef01234567"
M = TypeVar("M", bound=EmbeddingModel)


def spec(name: str, family: str, source: str, **fields: Any) -> ModelSpec:
    """A registry entry as a user's TOML file would give it."""
    return ModelSpec.model_validate({"name": name, "family": family, "source": source} | fields)


def load(model_spec: ModelSpec, kind: type[M]) -> M:
    """`load_model` on CPU, checked to give the adapter class the family names."""
    loaded = load_model(model_spec, CPU)
    assert isinstance(loaded, kind)
    return loaded


# -- pictures and the in-process call ------------------------------------------------------------


def png_files(n: int, step: int) -> list[bytes]:
    """`n` PNG files, square, 40 + `step` * i pixels a side, in three patterns."""
    return [png_bytes(i, size=40 + step * i, pattern=i % 3) for i in range(n)]


def rgba_png(size: int = 90) -> tuple[bytes, Image.Image]:
    """A half-transparent RGBA file, and the same picture flattened onto white."""
    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 256, (size, size, 4), dtype=np.uint8)
    pixels[..., 3] = np.where(np.arange(size)[None, :] < size // 2, 255, 60)
    image = Image.fromarray(pixels, "RGBA")
    white = Image.new("RGB", image.size, (255, 255, 255))
    white.paste(image, mask=image.split()[3])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), white


def decode(blobs: Sequence[bytes]) -> list[Image.Image]:
    return [Image.open(io.BytesIO(blob)).convert("RGB") for blob in blobs]


def images(n: int, step: int) -> list[Image.Image]:
    """The pictures of `png_files(n, step)`, decoded as the service decodes an upload."""
    return decode(png_files(n, step))


def embed(
    model: EmbeddingModel, pictures: Sequence[Image.Image], options: PromptOptions = DEFAULT_PROMPT
) -> np.ndarray:
    """What the service computes for these pictures: preprocess each, then one prepared batch."""
    return model.embed_prepared([model.preprocess_image(p) for p in pictures], options)


class ProcessorSpy:
    """Stands in for a model's processor: records each call's keyword arguments and its output, and
    forwards everything else to the real processor."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls: list[dict[str, Any]] = []
        self.outputs: list[Any] = []

    def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        self.outputs.append(self.real(**kwargs))
        return self.outputs[-1]

    @property
    def last(self) -> Any:
        return self.outputs[-1]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def assert_unit_and_batch_invariant(
    model: EmbeddingModel, texts: Sequence[str], pictures: Sequence[Image.Image], dimension: int
) -> None:
    """Texts and pictures give unit rows of `dimension`, each the row it gets when embedded alone, and
    the first two pictures do not collapse to one vector."""
    text_rows, picture_rows = model.embed_texts(list(texts)), embed(model, pictures)
    assert text_rows.shape == picture_rows.shape == (len(texts), model.dimension) == (len(texts), dimension)
    for vectors in (text_rows, picture_rows):
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    alone = np.concatenate([model.embed_texts([t]) for t in texts])
    np.testing.assert_allclose(text_rows, alone, atol=1e-5)
    np.testing.assert_allclose(picture_rows, np.concatenate([embed(model, [p]) for p in pictures]), atol=1e-5)
    assert not np.allclose(picture_rows[0], picture_rows[1])


@contextmanager
def padding_on(model: Any, side: str) -> Iterator[None]:
    """Inside the block the model's tokenizer pads on `side`; after it, on the model's own side."""
    model.tokenizer.padding_side = side
    try:
        yield
    finally:
        model.tokenizer.padding_side = model.padding_side


def assert_padded_on(side: str, mask: Any) -> None:
    """Some row of the batch whose attention mask this is was padded on `side`."""
    assert bool((mask[:, 0] == 0).any() if side == "left" else (mask[:, -1] == 0).any()), "the batch must pad"


# -- a pinned hub snapshot -----------------------------------------------------------------------


def pinned_snapshot(cache: Path, repo: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> RuntimeOptions:
    """Lay `folder` out as huggingface_hub caches `repo`'s snapshot at REVISION, take the hub offline,
    and return the CPU options that read that cache."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    shutil.copytree(folder, cache / f"models--{repo.replace('/', '--')}" / "snapshots" / REVISION)
    return RuntimeOptions(device="cpu", cache_dir=str(cache))


# -- the HTTP service ------------------------------------------------------------------------------


@contextmanager
def serve(specs: dict[str, ModelSpec], **settings: Any) -> Iterator[TestClient]:
    """The encoder app on CPU over `specs`, batching with a 1 ms wait; `settings` adds to that."""
    engine = EncoderEngine(EncoderSettings(max_wait_ms=1, device="cpu", **settings), specs=specs)
    with TestClient(create_app(engine=engine)) as client:
        yield client


def served_images(client: TestClient, model: str, blobs: Sequence[bytes], **fields: str) -> np.ndarray:
    """The `len(blobs) x D` float32 answer of `/v1/embeddings/images` for these files."""
    files = [("images", (f"{i}.png", blob, "image/png")) for i, blob in enumerate(blobs)]
    response = client.post("/v1/embeddings/images", data={"model": model, **fields}, files=files)
    assert response.status_code == 200, response.text
    dimension = int(response.headers[BINARY_DIM_HEADER])
    return np.frombuffer(response.content, dtype="<f4").reshape(len(blobs), dimension)


def served_texts(client: TestClient, model: str, texts: Sequence[str], **fields: Any) -> np.ndarray:
    """The vectors `/v1/embeddings` answers for `texts`, one row a text."""
    response = client.post("/v1/embeddings", json={"model": model, "input": list(texts), **fields})
    assert response.status_code == 200, response.text
    return np.array([row["embedding"] for row in response.json()["data"]])

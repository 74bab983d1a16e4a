"""The encoder port over functions in this process: a model loaded here, or a test's stand-in.

Whatever they return is made a float32 matrix, one row per input (a list of lists, a float64 array);
a wrong row count fails the call here, naming the model, not later in the pipeline. They raise the
port's errors themselves (`ItemRejected` with the index of an input they cannot read).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike

from marsbench.indexer.core.ports import EncoderError
from marsbench.schemas.models import ModelInfo

EmbedImages = Callable[[str, Sequence[bytes], Sequence[str]], ArrayLike]
EmbedTexts = Callable[[str, Sequence[str]], ArrayLike]
DescribeModel = Callable[[str], ModelInfo]


class LocalEncoder(Protocol):
    """Any object with the port's three methods returning arrays (e.g. `tests.fakes.FakeEncoder`)."""

    def model_info(self, model: str) -> ModelInfo: ...

    def embed_images(self, model: str, images: Sequence[bytes], names: Sequence[str]) -> ArrayLike: ...

    def embed_texts(self, model: str, texts: Sequence[str]) -> ArrayLike: ...


def as_rows(model: str, vectors: ArrayLike, inputs: int) -> np.ndarray:
    """`vectors` as an (inputs, D) float32 matrix, or EncoderError when it is not one row per input."""
    rows = np.asarray(vectors, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[0] != inputs:
        raise EncoderError(f"{model}: {inputs} inputs embedded as an array of shape {rows.shape}")
    return rows


class InProcessEncoder:
    """`marsbench.indexer.core.ports.Encoder` over plain callables. Without `embed_texts` the encoder
    embeds images only (a paired task's captions then fail the job with a clear reason)."""

    def __init__(
        self,
        *,
        model_info: DescribeModel,
        embed_images: EmbedImages,
        embed_texts: EmbedTexts | None = None,
    ) -> None:
        self._model_info = model_info
        self._embed_images = embed_images
        self._embed_texts = embed_texts

    @classmethod
    def of(cls, encoder: LocalEncoder) -> InProcessEncoder:
        """Wrap an object that already has the three methods."""
        return cls(
            model_info=encoder.model_info, embed_images=encoder.embed_images, embed_texts=encoder.embed_texts
        )

    def model_info(self, model: str) -> ModelInfo:
        return self._model_info(model)

    def embed_images(self, model: str, images: Sequence[bytes], names: Sequence[str]) -> np.ndarray:
        return as_rows(model, self._embed_images(model, images, names), len(images))

    def embed_texts(self, model: str, texts: Sequence[str]) -> np.ndarray:
        if self._embed_texts is None:
            raise EncoderError(f"{model}: this in-process encoder embeds no texts")
        return as_rows(model, self._embed_texts(model, texts), len(texts))

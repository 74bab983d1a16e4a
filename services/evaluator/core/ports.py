"""What the evaluator needs from the encoder, as a Protocol (the HTTP client implements it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from marsbench.schemas.models import ModelInfo


class QueryEncoder(Protocol):
    def model_info(self, model: str, *, load: bool = True) -> ModelInfo: ...

    def embed_texts(
        self, model: str, texts: Sequence[str], *, instruction: str | None = None
    ) -> np.ndarray: ...

    def embed_images(
        self, model: str, images: Sequence[bytes], names: Sequence[str] | None = None
    ) -> np.ndarray: ...

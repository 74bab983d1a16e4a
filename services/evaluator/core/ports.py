"""What the evaluator needs from the encoder, as a Protocol (the HTTP client implements it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class QueryEncoder(Protocol):
    def embed_texts(self, model: str, texts: Sequence[str]) -> np.ndarray: ...

    def embed_images(
        self, model: str, images: Sequence[bytes], names: Sequence[str] | None = None
    ) -> np.ndarray: ...

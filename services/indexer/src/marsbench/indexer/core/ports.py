"""What the indexer core needs from the encoder, and how a call to it fails: ports the core owns.

`marsbench.indexer.adapters` implements them (over HTTP, or in this process); the core never sees
an HTTP client, a status code or the client's exceptions.

EncoderError              the encoder refused the call, and asking again will not change that
├── ServiceUnavailable    it cannot answer now (unreachable, overloaded, restarting): retry later
└── ItemRejected          it cannot read one of the inputs (`index`, when it names which)

Each error's str() is the encoder's own account, as the job's error reports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from marsbench.schemas.models import ModelInfo


class Embedder(Protocol):
    """What the pipeline needs: one float32 row per input, in input order."""

    def embed_images(self, model: str, images: Sequence[bytes], names: Sequence[str]) -> np.ndarray: ...

    def embed_texts(self, model: str, texts: Sequence[str]) -> np.ndarray: ...


class Encoder(Embedder, Protocol):
    """What a job needs: the embedder, and the model's card (modalities, dimension, weights)."""

    def model_info(self, model: str) -> ModelInfo: ...


class EncoderError(Exception):
    pass


class ServiceUnavailable(EncoderError):
    pass


class ItemRejected(EncoderError):
    """`index`: the rejected input's position in the call's list, when the encoder names one.
    `reason`: what is wrong with that input (the skip log keeps it); the message by default."""

    def __init__(self, message: str, *, index: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.reason = reason or message

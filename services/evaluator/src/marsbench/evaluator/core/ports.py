"""What the evaluator needs from the encoder and the indexer, as Protocols, and how a call through
them fails (`UpstreamError`). `marsbench.evaluator.adapters` implements them over HTTP; the core
never sees an HTTP client, a status code or the client's exceptions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from marsbench.schemas.jobs import JobStatus
from marsbench.schemas.models import ModelInfo


@dataclass(frozen=True)
class Refusal:
    """What the other service answered when it refused a call: its status and error body."""

    status: int
    error: str  # the body's type, e.g. 'UnknownModel'
    message: str
    detail: dict[str, object] = field(default_factory=dict)
    param: str | None = None


class UpstreamError(Exception):
    """A call through a port failed: the other service was unreachable, or refused the call.

    str() is the other side's account, as the client gave it (the evaluator's messages embed it).
    `service` names the other side ('encoder', 'indexer'); `refusal` is its answer when it gave one,
    kept as data for the API layer (which passes a caller's mistake on); the core only catches it."""

    def __init__(self, message: str, *, service: str | None = None, refusal: Refusal | None = None) -> None:
        super().__init__(message)
        self.service = service
        self.refusal = refusal


class QueryEncoder(Protocol):
    """The encoder, for query embeddings and model cards. Raises UpstreamError."""

    def model_info(self, model: str, *, load: bool = True) -> ModelInfo: ...

    def embed_texts(
        self, model: str, texts: Sequence[str], *, instruction: str | None = None
    ) -> np.ndarray: ...

    def embed_images(
        self, model: str, images: Sequence[bytes], names: Sequence[str] | None = None
    ) -> np.ndarray: ...


class IndexingJobs(Protocol):
    """The indexer's jobs: whether a collection's indexing has finished. Raises UpstreamError."""

    def jobs(self, collection: str | None = None) -> list[JobStatus]: ...


@runtime_checkable
class ImageReader(Protocol):
    """A dataset reader that finds a stored point's image again from its payload (thumbnails).

    Raises `marsbench.datasets.lookup.ItemNotFound` for an item it does not hold and
    `DatasetError` for files it cannot read."""

    def read_image(self, payload: Mapping[str, Any]) -> bytes: ...

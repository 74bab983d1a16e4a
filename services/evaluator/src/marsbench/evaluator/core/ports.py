"""What the evaluator needs from the encoder and the indexer, as Protocols (the HTTP clients
implement them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from marsbench.schemas.jobs import JobStatus
from marsbench.schemas.models import ModelInfo


class QueryEncoder(Protocol):
    def model_info(self, model: str, *, load: bool = True) -> ModelInfo: ...

    def embed_texts(
        self, model: str, texts: Sequence[str], *, instruction: str | None = None
    ) -> np.ndarray: ...

    def embed_images(
        self, model: str, images: Sequence[bytes], names: Sequence[str] | None = None
    ) -> np.ndarray: ...


class IndexingJobs(Protocol):
    """The indexer's jobs: whether a collection's indexing has finished."""

    def jobs(self, collection: str | None = None) -> list[JobStatus]: ...


@runtime_checkable
class ImageReader(Protocol):
    """A dataset reader that finds a stored point's image again from its payload (thumbnails).

    Raises `marsbench.datasets.lookup.ItemNotFound` for an item it does not hold and
    `DatasetError` for files it cannot read."""

    def read_image(self, payload: Mapping[str, Any]) -> bytes: ...

"""The encoder and indexer ports over the services' HTTP APIs (`marsbench.client`).

Every client error becomes the port's `UpstreamError` with the client's message; a refusal (an
error answer) keeps its status and body as data, which `marsbench.evaluator.api.errors` reads to
pass an encoder's 4xx (unknown model, a modality it lacks) on to the evaluator's caller.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from marsbench import client
from marsbench.evaluator.core.ports import Refusal, UpstreamError
from marsbench.schemas.jobs import JobStatus
from marsbench.schemas.models import ModelInfo


def upstream_error(exc: client.MarsbenchError, service: str) -> UpstreamError:
    """The port's error for what the client of `service` raised."""
    refusal = (
        Refusal(status=exc.status, error=exc.error, message=exc.message, detail=exc.detail, param=exc.param)
        if isinstance(exc, client.ApiError)
        else None
    )
    return UpstreamError(str(exc), service=service, refusal=refusal)


@contextmanager
def _translated(service: str) -> Iterator[None]:
    try:
        yield
    except client.MarsbenchError as exc:
        raise upstream_error(exc, service) from exc


class HttpQueryEncoder:
    """`marsbench.evaluator.core.ports.QueryEncoder` over an `EncoderClient` (which it closes)."""

    def __init__(self, http: client.EncoderClient) -> None:
        self._client = http

    def model_info(self, model: str, *, load: bool = True) -> ModelInfo:
        with _translated("encoder"):
            return self._client.model_info(model, load=load)

    def embed_texts(self, model: str, texts: Sequence[str], *, instruction: str | None = None) -> np.ndarray:
        with _translated("encoder"):
            return self._client.embed_texts(model, texts, instruction=instruction)

    def embed_images(
        self, model: str, images: Sequence[bytes], names: Sequence[str] | None = None
    ) -> np.ndarray:
        with _translated("encoder"):
            return self._client.embed_images(model, images, names)

    def close(self) -> None:
        self._client.close()


class HttpIndexingJobs:
    """`marsbench.evaluator.core.ports.IndexingJobs` over an `IndexerClient` (which it closes)."""

    def __init__(self, http: client.IndexerClient) -> None:
        self._client = http

    def jobs(self, collection: str | None = None) -> list[JobStatus]:
        with _translated("indexer"):
            return self._client.jobs(collection)

    def close(self) -> None:
        self._client.close()

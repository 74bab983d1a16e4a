"""The encoder port over the encoder service's HTTP API (`marsbench.client.EncoderClient`).

The client's errors become the port's, by what they mean for a job: an encoder that did not answer
or answered "busy / (re)starting" is worth another attempt later; a 422 that names an input's index
rejects that input only; any other refusal fails the job. Each keeps the client's message.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from marsbench import client
from marsbench.indexer.core.ports import EncoderError, ItemRejected, ServiceUnavailable
from marsbench.schemas.models import ModelInfo

# Answers worth another attempt later: overloaded, or (re)starting behind a proxy. The client has
# already retried them; the job retries again, with its own (longer) backoff.
TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
# The encoder's answer for an input it cannot read (an undecodable image), with `detail.index`.
REJECTED_STATUS = 422


def encoder_error(exc: client.MarsbenchError) -> EncoderError:
    """The port's error for what the client raised."""
    if not isinstance(exc, client.ApiError):
        unreachable = isinstance(exc, client.ServiceUnavailable)
        return ServiceUnavailable(str(exc)) if unreachable else EncoderError(str(exc))
    if exc.status in TRANSIENT_STATUS:
        return ServiceUnavailable(str(exc))
    if exc.status == REJECTED_STATUS:
        index = exc.detail.get("index")
        return ItemRejected(str(exc), index=index if isinstance(index, int) else None, reason=exc.message)
    return EncoderError(str(exc))


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except client.MarsbenchError as exc:
        raise encoder_error(exc) from exc


class HttpEncoder:
    """`marsbench.indexer.core.ports.Encoder` over an `EncoderClient` (which it closes)."""

    def __init__(self, http: client.EncoderClient) -> None:
        self._client = http

    def model_info(self, model: str) -> ModelInfo:
        with _translated():
            return self._client.model_info(model)  # loads the model: its card then has the dimension

    def embed_images(self, model: str, images: Sequence[bytes], names: Sequence[str]) -> np.ndarray:
        with _translated():
            return self._client.embed_images(model, images, names)

    def embed_texts(self, model: str, texts: Sequence[str]) -> np.ndarray:
        with _translated():
            return self._client.embed_texts(model, texts)

    def close(self) -> None:
        self._client.close()

"""Embedding endpoints: OpenAI-shaped JSON, and a binary path for bulk images."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Annotated, TypeVar

import numpy as np
from fastapi import APIRouter, File, Form, Response, UploadFile

from marsbench.encoder.adapters.base import PromptOptions
from marsbench.encoder.api.deps import EngineDep
from marsbench.encoder.core.engine import EncoderEngine
from marsbench.encoder.core.images import data_uri_bytes
from marsbench.encoder.errors import InvalidInput, TimedOut
from marsbench.http import WITH_BODY, error_responses
from marsbench.schemas.common import Modality
from marsbench.schemas.embeddings import (
    BINARY_DIM_HEADER,
    BINARY_DTYPE_HEADER,
    BINARY_MEDIA_TYPE,
    BINARY_MODEL_HEADER,
    BINARY_ROWS_HEADER,
    WIRE_DTYPES,
    EmbeddingData,
    EmbeddingRequest,
    EmbeddingResponse,
    Usage,
    WireDtype,
)
from marsbench.security import LimitExceeded

R = TypeVar("R")

# Model lookup and loading (404, 503, 507), a full queue (429), the request timeout (504).
router = APIRouter(
    prefix="/v1/embeddings",
    tags=["embeddings"],
    responses=error_responses(*WITH_BODY, 404, 429, 503, 504, 507),
)


@router.post("")
async def create_embeddings(request: EmbeddingRequest, engine: EngineDep) -> EmbeddingResponse:
    items = request.items()
    _check_count(engine, items)
    if request.dimensions is not None:
        await _check_dimensions(engine, request.model, request.dimensions)
    options = PromptOptions(instruction=request.instruction, prompt_name=request.prompt_name)
    if request.modality is Modality.TEXT:
        _check_text_lengths(engine, items)
        call = partial(engine.embed_texts, request.model, items, options)
        vectors, tokens = await _bounded(engine, request.model, Modality.TEXT, call)
    else:
        blobs = [data_uri_bytes(item, i) for i, item in enumerate(items)]
        vectors = await _bounded(
            engine, request.model, Modality.IMAGE, partial(engine.embed_images, request.model, blobs, options)
        )
        tokens = 0
    data = [
        EmbeddingData(index=i, embedding=_encode(row, request.encoding_format, request.dtype))
        for i, row in enumerate(vectors)
    ]
    model = engine.resolve(request.model).name
    return EmbeddingResponse(data=data, model=model, usage=Usage(prompt_tokens=tokens, total_tokens=tokens))


@router.post(
    "/images",
    response_class=Response,
    responses={
        200: {"content": {BINARY_MEDIA_TYPE: {}}, "description": "N x D little-endian rows."},
    },
)
async def embed_image_files(
    engine: EngineDep,
    model: Annotated[str, Form(description="Model reference.")],
    images: Annotated[list[UploadFile], File(description="Encoded image files, in order.")],
    instruction: Annotated[str | None, Form(max_length=2000, description="As in /v1/embeddings.")] = None,
    prompt_name: Annotated[str | None, Form(max_length=100, description="As in /v1/embeddings.")] = None,
    dtype: Annotated[WireDtype, Form(description="Row element type: float32, or float16.")] = "float32",
) -> Response:
    """Bulk path for indexers: multipart files in, N x D little-endian float32 rows out.

    The whole form is received before this runs (spooled to disk beyond 1 MiB a file), so a client
    that uploads slowly holds only its own connection: its images reach a batch all at once."""
    _check_count(engine, images)
    blobs = [await image.read() for image in images]
    options = PromptOptions(instruction=instruction, prompt_name=prompt_name)
    vectors = await _bounded(
        engine, model, Modality.IMAGE, partial(engine.embed_images, model, blobs, options)
    )
    rows, dim = vectors.shape
    headers = {
        BINARY_ROWS_HEADER: str(rows),
        BINARY_DIM_HEADER: str(dim),
        BINARY_MODEL_HEADER: engine.resolve(model).name,
        BINARY_DTYPE_HEADER: dtype,
    }
    body = vectors.astype(WIRE_DTYPES[dtype]).tobytes()
    return Response(body, media_type=BINARY_MEDIA_TYPE, headers=headers)


def _check_count(engine: EncoderEngine, items: Sequence[object]) -> None:
    limit = engine.settings.max_items_per_request
    if len(items) > limit:
        raise LimitExceeded(
            f"{len(items)} inputs in one request",
            setting="MARSBENCH_ENCODER_MAX_ITEMS_PER_REQUEST",
            limit=limit,
        )


async def _check_dimensions(engine: EncoderEngine, ref: str, dimensions: int) -> None:
    """OpenAI's `dimensions` asks for shortened embeddings, which marsbench does not make: it is
    accepted only when it equals the model's own dimension (known once the model is loaded)."""
    card = await engine.describe(ref, load=True)
    if card.dimension is not None and dimensions != card.dimension:
        raise InvalidInput(
            f"dimensions={dimensions} is not supported: marsbench does not shorten embeddings, and model "
            f"{card.id!r} gives {card.dimension}; leave `dimensions` out, or set it to {card.dimension}",
            param="dimensions",
        )


def _check_text_lengths(engine: EncoderEngine, texts: Sequence[str]) -> None:
    limit = engine.settings.max_text_chars
    for index, text in enumerate(texts):
        if len(text) > limit:
            raise LimitExceeded(
                f"input[{index}] has {len(text)} characters",
                setting="MARSBENCH_ENCODER_MAX_TEXT_CHARS",
                limit=limit,
            )


async def _bounded(
    engine: EncoderEngine, ref: str, modality: Modality, call: Callable[[], Awaitable[R]]
) -> R:
    """`call()` within MARSBENCH_ENCODER_REQUEST_TIMEOUT_S, or TimedOut (504). On timeout the wait is
    cancelled, which drops the request's still-queued items from the batcher; other requests go on."""
    spec = engine.resolve(ref)
    if modality in spec.modalities:  # else `call` refuses it without loading anything
        # Loading is outside the timeout: it happens once per model, and cancelling it would waste it.
        await engine.model(ref)
    timeout = engine.settings.request_timeout_s
    try:
        return await asyncio.wait_for(call(), timeout)
    except TimeoutError:
        raise TimedOut(spec.name, timeout or 0.0) from None


def _encode(row: np.ndarray, encoding_format: str, dtype: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(row.astype(WIRE_DTYPES[dtype]).tobytes()).decode("ascii")
    return row.tolist()

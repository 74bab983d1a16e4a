"""Embedding endpoints: OpenAI-shaped JSON, and a binary path for bulk images."""

from __future__ import annotations

import base64
from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, Form, Response, UploadFile

from marsbench.encoder.adapters.base import PromptOptions
from marsbench.encoder.api.deps import EngineDep
from marsbench.encoder.core.images import data_uri_bytes
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

router = APIRouter(prefix="/v1/embeddings", tags=["embeddings"])


@router.post("")
async def create_embeddings(request: EmbeddingRequest, engine: EngineDep) -> EmbeddingResponse:
    items = request.items()
    options = PromptOptions(instruction=request.instruction, prompt_name=request.prompt_name)
    if request.modality is Modality.TEXT:
        vectors, tokens = await engine.embed_texts(request.model, items, options)
    else:
        blobs = [data_uri_bytes(item, i) for i, item in enumerate(items)]
        vectors = await engine.embed_images(request.model, blobs, options)
        tokens = 0
    data = [
        EmbeddingData(index=i, embedding=_encode(row, request.encoding_format, request.dtype))
        for i, row in enumerate(vectors)
    ]
    model = engine.resolve(request.model).name
    return EmbeddingResponse(data=data, model=model, usage=Usage(prompt_tokens=tokens, total_tokens=tokens))


@router.post("/images", response_class=Response)
async def embed_image_files(
    engine: EngineDep,
    model: Annotated[str, Form(description="Model reference.")],
    images: Annotated[list[UploadFile], File(description="Encoded image files, in order.")],
    instruction: Annotated[str | None, Form(max_length=2000, description="As in /v1/embeddings.")] = None,
    prompt_name: Annotated[str | None, Form(max_length=100, description="As in /v1/embeddings.")] = None,
    dtype: Annotated[WireDtype, Form(description="Row element type: float32, or float16.")] = "float32",
) -> Response:
    """Bulk path for indexers: multipart files in, N x D little-endian float32 rows out."""
    blobs = [await image.read() for image in images]
    options = PromptOptions(instruction=instruction, prompt_name=prompt_name)
    vectors = await engine.embed_images(model, blobs, options)
    rows, dim = vectors.shape
    headers = {
        BINARY_ROWS_HEADER: str(rows),
        BINARY_DIM_HEADER: str(dim),
        BINARY_MODEL_HEADER: engine.resolve(model).name,
        BINARY_DTYPE_HEADER: dtype,
    }
    body = vectors.astype(WIRE_DTYPES[dtype]).tobytes()
    return Response(body, media_type=BINARY_MEDIA_TYPE, headers=headers)


def _encode(row: np.ndarray, encoding_format: str, dtype: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(row.astype(WIRE_DTYPES[dtype]).tobytes()).decode("ascii")
    return row.tolist()

"""`GET /v1/models`: every registered model, loaded or not; `GET /v1/models/{ref}`: one card."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from marsbench.encoder.api.deps import EngineDep
from marsbench.http import GUARDED, error_responses
from marsbench.schemas.models import ModelInfo, ModelList

router = APIRouter(prefix="/v1/models", tags=["models"], responses=error_responses(*GUARDED))


@router.get("")
async def list_models(engine: EngineDep) -> ModelList:
    return ModelList(data=engine.list_models())


@router.get("/{ref:path}", responses=error_responses(404, 503, 507))
async def describe_model(
    ref: str,
    engine: EngineDep,
    load: Annotated[
        bool, Query(description="Load the model if needed, so the card carries its dimension and input size.")
    ] = False,
) -> ModelInfo:
    """The model's card, from the registry (modalities, source, the dimension once loaded) without
    loading anything, as OpenAI's `GET /v1/models/{id}` does; `load=true` loads it first."""
    return await engine.describe(ref, load=load)

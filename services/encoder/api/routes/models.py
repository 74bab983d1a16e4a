"""`GET /v1/models`: every registered model, loaded or not; `GET /v1/models/{ref}` loads one."""

from __future__ import annotations

from fastapi import APIRouter

from marsbench.encoder.api.deps import EngineDep
from marsbench.http import GUARDED, error_responses
from marsbench.schemas.models import ModelInfo, ModelList

router = APIRouter(prefix="/v1/models", tags=["models"], responses=error_responses(*GUARDED))


@router.get("")
async def list_models(engine: EngineDep) -> ModelList:
    return ModelList(data=engine.list_models())


@router.get("/{ref:path}", responses=error_responses(404, 503, 507))
async def describe_model(ref: str, engine: EngineDep, load: bool = True) -> ModelInfo:
    """Load the model if needed and report its dimension and input size; with `load=false`,
    answer from the registry (modalities, source) without loading anything."""
    return await engine.describe(ref, load=load)

"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from marsbench.encoder.api.deps import EngineDep
from marsbench.schemas.common import ReadyStatus

router = APIRouter(tags=["health"])


@router.get("/health")  # the alias TEI and Infinity serve
@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=ReadyStatus,
    responses={503: {"model": ReadyStatus, "description": "Preloaded models are still loading."}},
)
async def readyz(engine: EngineDep) -> JSONResponse:
    missing = engine.missing_preloads()
    status = 200 if not missing else 503
    return JSONResponse(ReadyStatus(ready=not missing, loading=missing).model_dump(), status_code=status)

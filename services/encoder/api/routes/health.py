"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from marsbench.encoder.api.deps import EngineDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(engine: EngineDep) -> JSONResponse:
    missing = engine.missing_preloads()
    status = 200 if not missing else 503
    return JSONResponse({"ready": not missing, "loading": missing}, status_code=status)

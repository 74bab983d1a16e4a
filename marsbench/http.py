"""HTTP pieces every service shares: probes and the error-to-status mapping."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from marsbench.schemas.common import ErrorBody


def status_for(exc: Exception, table: Mapping[type[Exception], int]) -> int:
    """The status of the first table entry `exc` is an instance of (order matters), else 500."""
    return next((code for kind, code in table.items() if isinstance(exc, kind)), 500)


def error_response(
    exc: Exception,
    status: int,
    *,
    error: str | None = None,
    message: str | None = None,
    detail: dict[str, object] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=error or type(exc).__name__, message=message or str(exc), detail=detail or None)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def probes_router() -> APIRouter:
    """`/healthz` and `/readyz` for a service that is ready as soon as it serves."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    def readyz() -> dict[str, bool]:
        return {"ready": True}

    return router

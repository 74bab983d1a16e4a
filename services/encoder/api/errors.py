"""The one mapping from encoder errors to HTTP statuses."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from marsbench.encoder.core.errors import (
    EncoderError,
    InvalidInput,
    InvalidModelRef,
    ModelLoadFailed,
    Overloaded,
    UnknownModel,
    UnsupportedModality,
)
from marsbench.schemas.common import ErrorBody

STATUS: dict[type[EncoderError], int] = {
    UnknownModel: 404,
    InvalidModelRef: 422,
    UnsupportedModality: 422,
    InvalidInput: 422,
    ModelLoadFailed: 503,
    Overloaded: 429,
}


async def _encoder_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EncoderError)
    status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 500)
    detail: dict[str, object] = {}
    headers: dict[str, str] = {}
    if isinstance(exc, UnknownModel):
        detail["known"] = exc.known
    if isinstance(exc, InvalidInput) and exc.index is not None:
        detail["index"] = exc.index
    if isinstance(exc, Overloaded):
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    body = ErrorBody(error=type(exc).__name__, message=str(exc), detail=detail or None)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EncoderError, _encoder_error)

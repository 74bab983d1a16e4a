"""The one mapping from encoder errors to HTTP statuses."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from marsbench.encoder.core.errors import (
    EncoderError,
    InvalidInput,
    InvalidModelRef,
    ModelLoadFailed,
    ModelTooLarge,
    Overloaded,
    TimedOut,
    UnknownModel,
    UnsupportedModality,
)
from marsbench.http import error_response, status_for

STATUS: dict[type[EncoderError], int] = {
    UnknownModel: 404,
    InvalidModelRef: 422,
    UnsupportedModality: 422,
    InvalidInput: 422,
    ModelLoadFailed: 503,
    ModelTooLarge: 507,
    Overloaded: 429,
    TimedOut: 504,
}


async def _encoder_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EncoderError)
    status = status_for(exc, STATUS)
    detail: dict[str, object] = {}
    headers: dict[str, str] = {}
    if isinstance(exc, UnknownModel):
        detail["known"] = exc.known
    if isinstance(exc, InvalidInput) and exc.index is not None:
        detail["index"] = exc.index
    if isinstance(exc, Overloaded):
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    if isinstance(exc, TimedOut):
        detail |= {"setting": "MARSBENCH_ENCODER_REQUEST_TIMEOUT_S", "limit": exc.timeout_s}
    return error_response(exc, status, detail=detail, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EncoderError, _encoder_error)

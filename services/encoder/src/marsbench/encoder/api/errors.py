"""The one mapping from encoder errors to HTTP statuses."""

from __future__ import annotations

import pickle

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from marsbench.encoder.errors import (
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
from marsbench.http import error_response, install_error_bodies, status_for

# Keyed by exception type as `status_for` reads it; every entry is an EncoderError.
STATUS: dict[type[Exception], int] = {
    UnknownModel: 404,
    InvalidModelRef: 422,
    UnsupportedModality: 422,
    InvalidInput: 422,
    ModelLoadFailed: 503,
    ModelTooLarge: 507,
    Overloaded: 429,
    TimedOut: 504,
}


UNSAFE_WEIGHTS_FIX = (
    "weights that hold pickled objects besides tensors are refused (unpickling them could run code); "
    "convert the file to safetensors, or load only files you trust"
)


def _is_pickle_refusal(exc: BaseException) -> bool:
    # torch's weights_only loader raises UnpicklingError for any pickle that is not plain tensors;
    # the file is the caller's (or the registry's) to fix, and retrying cannot help: not a 503.
    return isinstance(exc, pickle.UnpicklingError) or isinstance(exc.__cause__, pickle.UnpicklingError)


async def _unsafe_weights(request: Request, exc: Exception) -> JSONResponse:
    """A loader that let torch's refusal through unwrapped: still a 422, not a 500. The message cannot
    name the file (torch's does not); the adapters name it when they wrap it in ModelLoadFailed."""
    model = request.path_params.get("ref")
    where = f"model {model!r}: " if model else ""
    return error_response(exc, 422, error="UnsafeWeights", message=f"{where}{UNSAFE_WEIGHTS_FIX}")


async def _encoder_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EncoderError)
    if isinstance(exc, ModelLoadFailed) and _is_pickle_refusal(exc):
        return error_response(exc, 422, error="UnsafeWeights")  # its message names the file
    status = status_for(exc, STATUS)
    detail: dict[str, object] = {}
    headers: dict[str, str] = {}
    param: str | None = None  # OpenAI's name for the request field at fault
    if isinstance(exc, UnknownModel):
        detail["known"] = exc.known
        param = "model"
    if isinstance(exc, InvalidInput):
        param = exc.param or "input"
        if exc.index is not None:
            detail["index"] = exc.index
    if isinstance(exc, Overloaded):
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    if isinstance(exc, TimedOut):
        detail |= {"setting": "MARSBENCH_ENCODER_REQUEST_TIMEOUT_S", "limit": exc.timeout_s}
    return error_response(exc, status, detail=detail, param=param, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EncoderError, _encoder_error)
    app.add_exception_handler(pickle.UnpicklingError, _unsafe_weights)
    install_error_bodies(app)  # validation and routing errors in the same ErrorBody

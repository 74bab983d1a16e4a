"""The one mapping from evaluator errors to HTTP statuses."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from marsbench.evaluator.core.errors import (
    EvaluatorError,
    ImageUnavailable,
    IncompleteIndex,
    InvalidRun,
    NotIndexed,
    PointNotFound,
    RunNotFound,
)
from marsbench.evaluator.core.ports import Refusal, UpstreamError
from marsbench.files import DiskFull
from marsbench.http import error_response, install_error_bodies, status_for
from marsbench.store import CollectionNotFound, StoreError

STATUS: dict[type[Exception], int] = {
    DiskFull: 507,  # a run record (or its map) could not be written for lack of space
    RunNotFound: 404,
    PointNotFound: 404,
    NotIndexed: 404,  # no such collection (an unknown name, or (task, model, data) not indexed yet)
    IncompleteIndex: 409,
    ImageUnavailable: 409,
    InvalidRun: 422,
    CollectionNotFound: 404,  # a collection named but missing, wherever it escapes a route
    StoreError: 503,
    UpstreamError: 502,  # the encoder or the indexer is unreachable or failed
}
# Refusals by the other service that are the caller's to fix (unknown model, modality it lacks).
_CALLERS_MISTAKE = (404, 422)


async def _error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, UpstreamError) and exc.refusal is not None and exc.refusal.status in _CALLERS_MISTAKE:
        return _passed_on(exc, exc.refusal)
    detail = exc.detail if isinstance(exc, IncompleteIndex) else None
    return error_response(exc, status_for(exc, STATUS), detail=detail)


def _passed_on(exc: UpstreamError, refusal: Refusal) -> JSONResponse:
    """The other service's refusal as the evaluator's 422, in its words and with its error type."""
    message = f"{exc.service}: {refusal.message}" if exc.service else refusal.message
    return error_response(
        exc, 422, error=refusal.error, message=message, detail=refusal.detail, param=refusal.param
    )


def install_error_handlers(app: FastAPI) -> None:
    for kind in (EvaluatorError, StoreError, UpstreamError, DiskFull):
        app.add_exception_handler(kind, _error)
    install_error_bodies(app)  # validation and routing errors in the same ErrorBody

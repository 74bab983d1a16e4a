"""The one mapping from evaluator errors to HTTP statuses."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from marsbench.client import ApiError, MarsbenchError
from marsbench.evaluator.core.errors import (
    EvaluatorError,
    ImageUnavailable,
    IncompleteIndex,
    InvalidRun,
    NotIndexed,
    PointNotFound,
    RunNotFound,
)
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
    MarsbenchError: 502,
}


async def _error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, ApiError) and exc.status in (404, 422):
        # The encoder refused the query (unknown model, modality it lacks): the caller's to fix.
        message = f"encoder: {exc.message}"
        return error_response(exc, 422, error=exc.error, message=message, detail=exc.detail, param=exc.param)
    detail = exc.detail if isinstance(exc, IncompleteIndex) else None
    return error_response(exc, status_for(exc, STATUS), detail=detail)


def install_error_handlers(app: FastAPI) -> None:
    for kind in (EvaluatorError, StoreError, MarsbenchError, DiskFull):
        app.add_exception_handler(kind, _error)
    install_error_bodies(app)  # validation and routing errors in the same ErrorBody

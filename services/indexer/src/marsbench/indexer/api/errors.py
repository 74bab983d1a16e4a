"""The one mapping from indexer errors to HTTP statuses."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from marsbench.http import error_response, install_error_bodies, status_for
from marsbench.indexer.core.errors import IndexerError, InvalidJob, JobConflict, JobNotFound, NotFound
from marsbench.indexer.core.ports import EncoderError
from marsbench.store import CollectionNotFound, StoreError

STATUS: dict[type[Exception], int] = {
    JobNotFound: 404,
    NotFound: 404,  # an unknown collection or snapshot
    JobConflict: 409,
    InvalidJob: 422,
    CollectionNotFound: 404,  # a collection named but missing (not a 503 store failure)
    StoreError: 503,
    EncoderError: 502,  # the encoder refused the call or is unreachable
}


async def _error(request: Request, exc: Exception) -> JSONResponse:
    return error_response(exc, status_for(exc, STATUS))


def install_error_handlers(app: FastAPI) -> None:
    for kind in (IndexerError, StoreError, EncoderError):
        app.add_exception_handler(kind, _error)
    install_error_bodies(app)  # validation and routing errors in the same ErrorBody

"""HTTP pieces every service shares: probes, the error-to-status mapping, and the one error body.

Every error a service answers has the `ErrorBody` shape (OpenAI's `{"error": {message, type, code,
param}}`, plus marsbench's `detail`), FastAPI's own validation errors and routing
errors (404, 405) included, and each route's OpenAPI entry declares the error statuses it really
returns (`error_responses`), so the documents are true for clients and for schemathesis.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from marsbench.schemas.common import ErrorBody, ErrorObject, ReadyStatus


def status_for(exc: Exception, table: Mapping[type[Exception], int]) -> int:
    """The status of the first table entry `exc` is an instance of (order matters), else 500."""
    return next((code for kind, code in table.items() if isinstance(exc, kind)), 500)


def error_code(kind: str) -> str:
    """The stable snake_case `code` of an error type: 'UnknownModel' -> 'unknown_model'."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", kind).lower()


def error_response(
    exc: Exception,
    status: int,
    *,
    error: str | None = None,
    message: str | None = None,
    detail: dict[str, object] | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The one error body, `{"error": {message, type, code, param, detail}}` (OpenAI's shape, with
    marsbench's `detail`): `type` is the error's class name, `code` the same in snake_case."""
    kind = error or type(exc).__name__
    body = ErrorBody(
        error=ErrorObject(
            message=message or str(exc), type=kind, code=error_code(kind), param=param, detail=detail or None
        )
    )
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


# What each error status means across the services; routes name the ones they return.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The body could not be parsed (not UTF-8 JSON, or a malformed multipart form).",
    401: "Missing or invalid API key (only when MARSBENCH_API_KEY is set).",
    403: "The dataset folder lies outside MARSBENCH_DATASET_ROOTS.",
    404: "No such resource; the message says which and where to list them.",
    409: "The resource is not in a state that allows this (the message says which).",
    413: "Over a configured size limit; detail names the setting and its value.",
    422: "Invalid request: detail.errors lists each bad field (loc, msg) when the request does not "
    "match its schema; otherwise the message says what to fix.",
    429: "Overloaded: retry after the Retry-After header's seconds.",
    502: "A service this one calls failed or is unreachable.",
    503: "Unavailable for now (the store, or a model that failed to load); retry later.",
    504: "Timed out (detail names the setting).",
    507: "The model does not fit the encoder's memory budget.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries, all with the `ErrorBody` model, for a route or router.

    Declaring 422 here also replaces FastAPI's default `HTTPValidationError` entry, which would
    document a body no route returns (see `install_error_bodies`)."""
    return {status: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[status]} for status in statuses}


# Errors every route behind the API key (and, with a body, the body limit) can answer. 422 is not
# listed: FastAPI documents it on each route that takes parameters, and `install_error_bodies`
# makes that entry name `ErrorBody`.
GUARDED = (401,)
WITH_BODY = (400, 401, 413)


def _jsonable(value: object) -> object:
    """A value JSON can carry: validation errors echo the input, which may be NaN or infinity
    (Python's JSON reader accepts them) or bytes; those are written as strings, not as a 500."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


MAX_ECHOED_CHARS = 200  # of a bad input echoed back: a 5 MB string is not repeated in the answer


def _echo(value: object) -> object:
    shown = _jsonable(value)
    text = json.dumps(shown)
    return shown if len(text) <= MAX_ECHOED_CHARS else text[:MAX_ECHOED_CHARS] + "..."


class FieldError(TypedDict):
    """One bad field of a request, as `detail.errors` lists it."""

    loc: list[str]
    msg: str
    type: str
    input: NotRequired[object]


def _field_error(error: Mapping[str, Any]) -> FieldError:
    item = FieldError(
        loc=[str(part) for part in error.get("loc", ())],
        msg=str(error.get("msg", "")),
        type=str(error.get("type", "")),
    )
    if "input" in error:
        item["input"] = _echo(error["input"])
    return item


def validation_errors(errors: Sequence[Mapping[str, Any]]) -> list[FieldError]:
    """FastAPI's error list as JSON-safe `{loc, msg, type, input}` items."""
    return [_field_error(error) for error in errors]


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc.errors())
    shown = "; ".join(
        f"{'.'.join(e['loc']) or 'request'}: {e['msg'].removeprefix('Value error, ')}" for e in errors[:5]
    )
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    message = f"invalid request: {shown}{more}; fix these fields and retry"
    return error_response(
        exc, 422, error="ValidationError", message=message, detail={"errors": errors}, param=_param(errors)
    )


def _param(errors: Sequence[FieldError]) -> str | None:
    """OpenAI's `param`: the first bad field, without its `body`/`query`/`path` prefix."""
    loc = list(errors[0]["loc"]) if errors else []
    if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
        loc = loc[1:]
    return ".".join(loc) or None


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else json.dumps(_jsonable(exc.detail))
    error = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
    return error_response(exc, exc.status_code, error=error, message=message, headers=exc.headers)


def _error_body_422(document: dict[str, Any]) -> dict[str, Any]:
    """The document with each operation's 422 naming `ErrorBody` (what `_validation_error` sends)
    instead of FastAPI's `HTTPValidationError`, whose schemas are then dropped as unused."""
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            answer = operation.get("responses", {}).get("422")
            if answer is not None:
                answer["description"] = ERROR_DESCRIPTIONS[422]
                answer["content"] = {"application/json": {"schema": ref}}
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, schema in body.pop("$defs", {}).items():
        schemas.setdefault(name, schema)
    schemas.setdefault("ErrorBody", body)
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{unused}" not in json.dumps(document):
            schemas.pop(unused, None)
    return document


def install_error_bodies(app: FastAPI) -> None:
    """Answer FastAPI's validation errors and Starlette's HTTP errors (unknown path, wrong method,
    unparsable form) in `ErrorBody`, like every other error, and document 422 as that: one shape
    for clients, the OpenAPI document and schemathesis."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _error_body_422(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def probes_router() -> APIRouter:
    """`/healthz` (and its alias `/health`, as TEI and Infinity name it) and `/readyz` for a service
    that is ready as soon as it serves."""
    router = APIRouter(tags=["health"])

    @router.get("/health")
    @router.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    def readyz() -> ReadyStatus:
        return ReadyStatus(ready=True)

    return router

"""Request ids that follow one piece of work across services.

A service takes the id from `X-Request-ID` when the caller sends a sane one (or makes one up) and
keeps it in a context variable for the request's duration; outgoing calls send it on
(`request_id_headers()`), so one id follows an indexing job or an evaluation run into the encoder's
logs. Pure standard library: the client imports it without pulling in a web framework.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import uuid
from collections.abc import Iterator

REQUEST_ID_HEADER = "X-Request-ID"
# Ids from callers end up in log lines: only short ids of safe characters are kept as sent.
_SANE_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "marsbench_request_id", default=None
)
service_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("marsbench_service", default=None)


def current_request_id() -> str | None:
    """The id of the request being served on this task or thread (None outside any request)."""
    return request_id_var.get()


def request_id_headers() -> dict[str, str]:
    """Headers for an outgoing call, so the next service logs under the same id."""
    rid = request_id_var.get()
    return {REQUEST_ID_HEADER: rid} if rid else {}


@contextlib.contextmanager
def request_context(request_id: str | None = None, service: str | None = None) -> Iterator[str]:
    """Run a block under a request id (a new one by default): for work started outside HTTP."""
    rid = request_id or new_request_id()
    tokens = (request_id_var.set(rid), service_var.set(service or service_var.get()))
    try:
        yield rid
    finally:
        service_var.reset(tokens[1])
        request_id_var.reset(tokens[0])


def new_request_id() -> str:
    """A fresh id: 32 hex digits."""
    return uuid.uuid4().hex


def accepted_id(sent: str | None) -> str:
    """The caller's id when it is short and of safe characters (it ends up in logs), else a new one."""
    return sent if sent and _SANE_ID.fullmatch(sent) else new_request_id()

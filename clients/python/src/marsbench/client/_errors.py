"""Client exceptions.

MarsbenchError
├── ServiceUnavailable   the service could not be reached (after retries)
└── ApiError             the service answered with an error body (status, type, message)
"""

from __future__ import annotations


class MarsbenchError(Exception):
    pass


class ServiceUnavailable(MarsbenchError):
    pass


class ApiError(MarsbenchError):
    """`error` is the body's `type` (e.g. 'UnknownModel'), `code` its snake_case form, `param` the
    request field at fault. Read from `{"error": {...}}`, or from an older server's flat
    `{error, message, detail}` (then `code` and `param` are None)."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        detail: dict[str, object] | None,
        *,
        code: object = None,
        param: object = None,
    ) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message
        self.detail = detail or {}
        self.code = None if code is None else str(code)
        self.param = None if param is None else str(param)

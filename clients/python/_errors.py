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
    def __init__(self, status: int, error: str, message: str, detail: dict[str, object] | None) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message
        self.detail = detail or {}

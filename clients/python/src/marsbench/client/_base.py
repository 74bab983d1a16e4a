"""What every client shares: base URLs, retries with backoff, and error parsing."""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from typing import Self

import httpx

from marsbench.client._auth import auth_headers
from marsbench.client._errors import ApiError, ServiceUnavailable
from marsbench.tracing import request_id_headers

# Statuses worth retrying: overload (honouring Retry-After) and a service (re)starting.
_RETRY_STATUS = {429, 502, 503, 504}

QueryValue = str | int | float | bool | None
# A multipart file part: (form field, (file name, content, content type)).
FilePart = tuple[str, tuple[str, bytes, str]]


class BaseClient:
    """Sync HTTP client over one or more replicas of a service (round-robin)."""

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        timeout: float = 120.0,
        retries: int = 4,
        backoff_s: float = 0.5,
        api_key: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("at least one service URL is needed")
        self._cycle = itertools.cycle(range(len(self.urls)))
        self._retries = retries
        self._backoff_s = backoff_s
        headers = auth_headers(api_key)  # the argument, else MARSBENCH_API_KEY
        self._http = httpx.Client(timeout=timeout, headers=headers, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, QueryValue] | None = None,
        json: object = None,
        data: Mapping[str, str] | None = None,
        files: Sequence[FilePart] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send to the next replica; retry connection failures and retryable statuses. `timeout`
        (seconds) replaces the client's own for this request."""
        # Inside a service's request (or a job it started), the caller's request id goes along.
        sent_headers = {**request_id_headers(), **(headers or {})}
        last: Exception | None = None
        for attempt in range(self._retries + 1):
            base = self.urls[next(self._cycle)].rstrip("/")
            try:
                response = self._http.request(
                    method,
                    f"{base}{path}",
                    params=params,
                    json=json,
                    data=data,
                    files=files,
                    headers=sent_headers,
                    timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
                )
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                last = exc
                self._sleep(attempt, None)
                continue
            if response.status_code in _RETRY_STATUS and attempt < self._retries:
                last = _api_error(response)
                self._sleep(attempt, response.headers.get("Retry-After"))
                continue
            if response.is_error:
                raise _api_error(response)
            return response
        if isinstance(last, ApiError):
            raise last
        raise ServiceUnavailable(f"{method} {path}: no answer from {', '.join(self.urls)} ({last})")

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        if attempt >= self._retries:
            return
        delay = self._backoff_s * (2**attempt)
        if retry_after and retry_after.replace(".", "", 1).isdigit():
            delay = max(delay, float(retry_after))
        time.sleep(delay)


def _api_error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and "message" in error:  # {"error": {message, type, code, param, detail}}
        kind = str(error.get("type") or error.get("code") or "HTTPError")
        detail = error.get("detail") if isinstance(error.get("detail"), dict) else None
        code, param = error.get("code"), error.get("param")
        return ApiError(response.status_code, kind, str(error["message"]), detail, code=code, param=param)
    if isinstance(body, dict) and "error" in body and "message" in body:  # before issue 18: {error, message}
        return ApiError(response.status_code, str(body["error"]), str(body["message"]), body.get("detail"))
    if isinstance(body, dict) and "detail" in body:  # FastAPI's own validation errors
        return ApiError(response.status_code, "ValidationError", str(body["detail"]), None)
    return ApiError(response.status_code, "HTTPError", response.text[:500], None)

"""The request middleware: a request id for the whole request, one log line and the request metrics."""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from marsbench.observability.logs import configure_if_unconfigured
from marsbench.tracing import REQUEST_ID_HEADER, accepted_id, request_context

_UNMATCHED = "<unmatched>"  # the route label of requests no route matched (404s, fuzzers' paths)
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode()

# Latency buckets from a cached text embedding (milliseconds) to an evaluation run (minutes).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 600)

log = logging.getLogger("marsbench.http")


class HttpMetrics:
    """Requests answered and their latency, by method, route template and status."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("method", "route", "status")
        self.requests = Counter(
            "marsbench_http_requests", "HTTP requests answered.", labels, registry=registry
        )
        self.latency = Histogram(
            "marsbench_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response.",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route, str(status)).observe(seconds)


class ObservabilityMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): sets the request id for the whole request, echoes it in
    the response, logs one line per request and counts it under its route template."""

    def __init__(self, app: ASGIApp, *, service: str, metrics: HttpMetrics) -> None:
        self.app = app
        self.service = service
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            configure_if_unconfigured()
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = accepted_id(_sent_request_id(scope))
        status = 500  # what the client gets if the app raises before answering
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers") or [])
                headers.append((_REQUEST_ID_KEY, rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        with request_context(rid, self.service):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                self._record(scope["method"], route_template(scope), status, time.perf_counter() - started)

    def _record(self, method: str, route: str, status: int, seconds: float) -> None:
        self.metrics.observe(method, route, status, seconds)
        log.log(
            logging.WARNING if status >= 500 else logging.INFO,
            "%s %s %d",
            method,
            route,
            status,
            extra={
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
            },
        )


def _sent_request_id(scope: Scope) -> str | None:
    sent = dict(scope.get("headers") or []).get(_REQUEST_ID_KEY)
    return sent.decode("latin-1") if sent else None


def route_template(scope: Scope) -> str:
    """The matched route's path template (Starlette's router leaves the route in the scope)."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else _UNMATCHED

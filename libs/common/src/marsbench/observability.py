"""Metrics and request ids every service shares; `install_observability(app, service)` wires both in.

- Prometheus metrics at `/metrics`, in a registry of the app's own (tests build many apps in one
  process, so nothing is registered globally): request counts and latency by route template and
  status, process memory and CPU, and the service's own metrics (the encoder's queue depth, batch
  sizes, embedded items, model loads and unloads; the indexer's job progress and skips).
- A request id per request: taken from `X-Request-ID` when the caller sends a sane one, made up
  otherwise, returned in the response, and kept in a context variable for the request's duration.
  Log records carry it as `request_id` (and `service`), and `marsbench.client` sends it on, so one
  id follows an indexing job or an evaluation run into the encoder's logs.
- `configure_logging()`: structured lines on stderr (`key=value`, or JSON with
  MARSBENCH_LOG_FORMAT=json). A service started directly by uvicorn, where nobody configured
  logging, gets it at start-up; the CLI calls it itself.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from starlette.requests import Request
from starlette.responses import Response

from marsbench.tracing import REQUEST_ID_HEADER, accepted_id, request_context, request_id_var, service_var

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

_UNMATCHED = "<unmatched>"  # the route label of requests no route matched (404s, fuzzers' paths)

log = logging.getLogger("marsbench.http")


# -- logging ----------------------------------------------------------------------------------------

_FACTORY_MARK = "_marsbench_request_ids"


def install_log_context() -> None:
    """Give every log record `request_id` and `service` attributes from the current context.

    A record factory (not a handler filter) so records reach any handler, pytest's included, with
    them set, whichever logger emitted them. Idempotent: installed once per process."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, _FACTORY_MARK, False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = request_id_var.get()
        record.service = service_var.get()
        return record

    setattr(factory, _FACTORY_MARK, True)
    logging.setLogRecordFactory(factory)


_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class StructuredFormatter(logging.Formatter):
    """One line per record: `key=value` pairs (values with spaces quoted), or a JSON object.

    Fields: time, level, logger, service, request_id, msg, then any `extra={...}` fields."""

    def __init__(self, fmt: str = "kv") -> None:
        super().__init__()
        if fmt not in ("kv", "json"):
            raise ValueError(f"log format must be 'kv' or 'json', not {fmt!r}")
        self._json = fmt == "json"

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "service": getattr(record, "service", None),
            "request_id": getattr(record, "request_id", None),
            "msg": record.getMessage(),
        }
        fields.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and k not in fields})
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        present = {k: v for k, v in fields.items() if v is not None}
        if self._json:
            return json.dumps(present, default=str)
        return " ".join(f"{k}={_kv_value(v)}" for k, v in present.items())


def _kv_value(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\n\t'):
        return text
    return json.dumps(text)  # quoted, with newlines and quotes escaped: one record stays one line


_HANDLER_MARK = "_marsbench_structured"


def configure_logging(level: int | str | None = None, fmt: str | None = None) -> None:
    """Structured lines on stderr through the root logger; level and format default to the
    MARSBENCH_LOG_LEVEL (info) and MARSBENCH_LOG_FORMAT (kv) environment variables."""
    install_log_context()
    root = logging.getLogger()
    level = level if level is not None else os.environ.get("MARSBENCH_LOG_LEVEL", "info")
    root.setLevel(level.upper() if isinstance(level, str) else level)
    formatter = StructuredFormatter(fmt or os.environ.get("MARSBENCH_LOG_FORMAT", "kv"))
    for handler in root.handlers:
        if getattr(handler, _HANDLER_MARK, False):
            handler.setFormatter(formatter)
            return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)


# -- HTTP metrics and the middleware ----------------------------------------------------------------

# Latency buckets from a cached text embedding (milliseconds) to an evaluation run (minutes).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 600)


class HttpMetrics:
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
            _configure_if_unconfigured()
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope.get("headers") or []).get(REQUEST_ID_HEADER.lower().encode())
        rid = accepted_id(sent.decode("latin-1") if sent else None)
        status = 500  # what the client gets if the app raises before answering
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers") or [])
                headers.append((REQUEST_ID_HEADER.lower().encode(), rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        with request_context(rid, self.service):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - started
                route = _route_template(scope)
                self.metrics.observe(scope["method"], route, status, seconds)
                log.log(
                    logging.WARNING if status >= 500 else logging.INFO,
                    "%s %s %d",
                    scope["method"],
                    route,
                    status,
                    extra={
                        "method": scope["method"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 2),
                    },
                )


def _route_template(scope: Scope) -> str:
    # Starlette's router leaves the matched route in the scope; its path is the template.
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else _UNMATCHED


def _configure_if_unconfigured() -> None:
    # Under `uvicorn --factory` nobody configures the root logger and the services' own lines
    # (job progress, model loads) would be lost; where someone did (the CLI, pytest), keep theirs.
    install_log_context()
    if not logging.getLogger().handlers:
        configure_logging()


# -- the encoder's own metrics ----------------------------------------------------------------------


class EncoderMetrics:
    """What the encoder engine reports as it works (its `observer`); queue depth and loaded models
    are read at scrape time by `_EncoderStateCollector` instead, as they are state, not events."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.batch_size = Histogram(
            "marsbench_encoder_batch_size",
            "Items per forward pass.",
            ("model", "modality"),
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "marsbench_encoder_batch_seconds",
            "Duration of one forward pass.",
            ("model", "modality"),
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.items = Counter(
            "marsbench_encoder_embedded_items",
            "Items embedded; rate() of it is the items per second.",
            ("model", "modality"),
            registry=registry,
        )
        self.model_events = Counter(
            "marsbench_encoder_model_events",
            "Model loads, load failures and unloads.",
            ("model", "event"),
            registry=registry,
        )
        self.load_seconds = Histogram(
            "marsbench_encoder_model_load_seconds",
            "Time to load a model's weights.",
            ("model",),
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
            registry=registry,
        )

    def batch_done(self, batcher: str, items: int, seconds: float) -> None:
        model, _, modality = batcher.rpartition("/")
        self.batch_size.labels(model, modality).observe(items)
        self.batch_seconds.labels(model, modality).observe(seconds)
        self.items.labels(model, modality).inc(items)

    def model_loaded(self, model: str, seconds: float) -> None:
        self.model_events.labels(model, "load").inc()
        self.load_seconds.labels(model).observe(seconds)

    def model_load_failed(self, model: str) -> None:
        self.model_events.labels(model, "load_failed").inc()

    def model_unloaded(self, model: str) -> None:
        self.model_events.labels(model, "unload").inc()


class _EncoderStateCollector:
    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def collect(self) -> Iterable[Metric]:
        queued = GaugeMetricFamily(
            "marsbench_encoder_queued_items",
            "Items waiting for a forward pass (the queue depth), per model and modality.",
            labels=["model", "modality"],
        )
        for (model, modality), items in sorted(self._engine.queue_depths().items()):
            queued.add_metric([model, modality], items)
        yield queued
        yield GaugeMetricFamily(
            "marsbench_encoder_models_loaded", "Models in memory.", value=len(self._engine.loaded_models())
        )
        yield GaugeMetricFamily(
            "marsbench_encoder_loaded_bytes",
            "Bytes of loaded model weights.",
            value=self._engine.loaded_bytes(),
        )


# -- the indexer's job metrics ----------------------------------------------------------------------


class _IndexerJobsCollector:
    """Reads the job manager's state at scrape time: the jobs' own records are the truth (they
    survive restarts), so nothing is counted twice or lost when the indexer resumes a job."""

    def __init__(self, jobs: Callable[[], Any]) -> None:
        self._jobs = jobs

    def collect(self) -> Iterable[Metric]:
        manager = self._jobs()
        jobs = manager.list() if manager is not None else []
        by_state = GaugeMetricFamily("marsbench_indexer_jobs", "Jobs known, by state.", labels=["state"])
        counts: dict[str, int] = {}
        for job in jobs:
            counts[job.state.value] = counts.get(job.state.value, 0) + 1
        for state, count in sorted(counts.items()):
            by_state.add_metric([state], count)
        yield by_state
        labels = ["job", "collection"]
        done = GaugeMetricFamily(
            "marsbench_indexer_job_done_items", "Items in the job's collection.", labels=labels
        )
        total = GaugeMetricFamily(
            "marsbench_indexer_job_total_items", "Items the job's dataset holds, once counted.", labels=labels
        )
        skipped = GaugeMetricFamily(
            "marsbench_indexer_job_skipped_items", "Items skipped (unreadable, bad rows).", labels=labels
        )
        rate = GaugeMetricFamily(
            "marsbench_indexer_job_items_per_second",
            "Items written per second by the job's run.",
            labels=labels,
        )
        state = GaugeMetricFamily(
            "marsbench_indexer_job_state",
            "1 for the job's current state.",
            labels=[*labels, "task", "model", "state"],
        )
        for job in jobs:
            key = [job.id, job.collection]
            done.add_metric(key, job.done)
            skipped.add_metric(key, job.skipped)
            if job.total is not None:
                total.add_metric(key, job.total)
            if job.rate is not None:
                rate.add_metric(key, job.rate)
            state.add_metric([*key, job.task.value, job.model, job.state.value], 1)
        yield from (done, total, skipped, rate, state)


# -- installation -----------------------------------------------------------------------------------


def install_observability(app: FastAPI, service: str) -> CollectorRegistry:
    """Metrics at /metrics, request ids and per-request log lines for `app` (call before it starts).

    `service` picks the service's own metrics: "encoder" (needs `app.state.engine`), "indexer"
    (reads `app.state.jobs` at scrape time, set by the lifespan), anything else: HTTP only."""
    install_log_context()
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # RSS and CPU: the load benchmark bounds memory growth with it
    app.state.metrics_registry = registry
    app.add_middleware(ObservabilityMiddleware, service=service, metrics=HttpMetrics(registry))
    if service == "encoder":
        engine = app.state.engine
        engine.observer = EncoderMetrics(registry)
        registry.register(_EncoderStateCollector(engine))
    elif service == "indexer":
        registry.register(_IndexerJobsCollector(lambda: getattr(app.state, "jobs", None)))

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    return registry

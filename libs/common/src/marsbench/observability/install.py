"""`install_observability(app, service)`: metrics at /metrics, request ids and per-request log lines."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector
from starlette.requests import Request
from starlette.responses import Response

from marsbench.observability.collectors import (
    IndexerJobsCollector,
    JobSource,
    ObservedEncoder,
    install_encoder_metrics,
)
from marsbench.observability.http import HttpMetrics, ObservabilityMiddleware
from marsbench.observability.logs import install_log_context

if TYPE_CHECKING:
    from fastapi import FastAPI  # only the type: the CLI imports this package for its logging


def install_observability(
    app: FastAPI, service: str, *, engine: ObservedEncoder | None = None
) -> CollectorRegistry:
    """Metrics at /metrics, request ids and per-request log lines for `app` (call before it starts).

    `service` picks the service's own metrics: "encoder" (`engine`, else `app.state.engine`),
    "indexer" (reads `app.state.jobs` at scrape time, set by the lifespan), anything else: HTTP
    only. Passing `engine` has the type checker hold the engine to the `ObservedEncoder` Protocol."""
    install_log_context()
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # RSS and CPU: the load benchmark bounds memory growth with it
    app.state.metrics_registry = registry
    app.add_middleware(ObservabilityMiddleware, service=service, metrics=HttpMetrics(registry))
    if service == "encoder":
        install_encoder_metrics(registry, engine if engine is not None else app.state.engine)
    elif service == "indexer":

        def jobs() -> JobSource | None:
            found: JobSource | None = getattr(app.state, "jobs", None)
            return found

        registry.register(IndexerJobsCollector(jobs))

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    return registry

"""Metrics, request ids and logs every service shares; `install_observability(app, service)` wires them in.

- Prometheus metrics at `/metrics`, in a registry of the app's own (tests build many apps in one
  process, so nothing is registered globally): request counts and latency by route template and
  status (`http`), process memory and CPU, and the service's own metrics (`collectors`: the
  encoder's queue depth, batch sizes, embedded items, model loads and unloads; the indexer's job
  progress and skips), read through Protocols the services' classes satisfy.
- A request id per request: taken from `X-Request-ID` when the caller sends a sane one, made up
  otherwise, returned in the response, and kept in a context variable for the request's duration
  (`marsbench.tracing`, in the wire package). Log records carry it as `request_id` (and `service`),
  and `marsbench.client` sends it on, so one id follows an indexing job or an evaluation run into
  the encoder's logs.
- `configure_logging()` (`logs`): structured lines on stderr (`key=value`, or JSON with
  MARSBENCH_LOG_FORMAT=json). A service started directly by uvicorn, where nobody configured
  logging, gets it at start-up; the CLI calls it itself.
"""

from marsbench.observability.collectors import (
    EncoderEvents,
    EncoderMetrics,
    EncoderState,
    EncoderStateCollector,
    IndexerJobsCollector,
    JobSource,
    ObservedEncoder,
    install_encoder_metrics,
)
from marsbench.observability.http import HttpMetrics, ObservabilityMiddleware, route_template
from marsbench.observability.install import install_observability
from marsbench.observability.logs import StructuredFormatter, configure_logging, install_log_context

__all__ = [
    "EncoderEvents",
    "EncoderMetrics",
    "EncoderState",
    "EncoderStateCollector",
    "HttpMetrics",
    "IndexerJobsCollector",
    "JobSource",
    "ObservabilityMiddleware",
    "ObservedEncoder",
    "StructuredFormatter",
    "configure_logging",
    "install_encoder_metrics",
    "install_log_context",
    "install_observability",
    "route_template",
]

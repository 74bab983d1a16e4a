"""Structured log lines that carry the request id and the service of the request being served."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

from marsbench.tracing import request_id_var, service_var

_FACTORY_MARK = "_marsbench_request_ids"
_HANDLER_MARK = "_marsbench_structured"


def install_log_context() -> None:
    """Give every log record `request_id` and `service` attributes from the current context.

    A record factory (not a handler filter) so records reach any handler, pytest's included, with
    them set, whichever logger emitted them. Idempotent: installed once per process."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, _FACTORY_MARK, False):
        return

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
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
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(formatter)
    setattr(stream, _HANDLER_MARK, True)
    root.addHandler(stream)


def configure_if_unconfigured() -> None:
    """Structured logging unless someone configured the root logger already.

    Under `uvicorn --factory` nobody configures it and the services' own lines (job progress,
    model loads) would be lost; where someone did (the CLI, pytest), theirs are kept."""
    install_log_context()
    if not logging.getLogger().handlers:
        configure_logging()

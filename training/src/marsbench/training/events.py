"""What a training worker reports on its stdout: one JSON line per event, behind a fixed prefix.

The parent (`marsbench train --nproc`, the trainer app) reads the worker's merged output line by
line: lines with the prefix are events, every other line (torchrun's and the libraries' own
messages) is plain output, kept for logs and error messages. Under torchrun the ranks share that
stream; the worker writes each event line in one write (marsbench.training.worker.emit), so two
ranks' events never interleave.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

EVENT_PREFIX = "@marsbench-train "


class StepEvent(BaseModel):
    """A completed optimiser step (rank 0)."""

    kind: Literal["step"] = "step"
    step: int
    total: int
    loss: float
    lr: float
    rate: float = Field(description="Steps per second since this process started training.")
    eta_s: float


class LogEvent(BaseModel):
    kind: Literal["log"] = "log"
    message: str


class RankEvent(BaseModel):
    """One rank's summary at the end: every rank sends it, so the parent sees that all ran."""

    kind: Literal["rank"] = "rank"
    rank: int
    world_size: int
    steps: int
    written: list[str] = Field(description="Files and folders this rank wrote (rank 0 only, by design).")


class DoneEvent(BaseModel):
    """The run succeeded; its training record (rank 0)."""

    kind: Literal["done"] = "done"
    record: str


class ErrorEvent(BaseModel):
    kind: Literal["error"] = "error"
    rank: int
    type: str
    message: str


AnyEvent = StepEvent | LogEvent | RankEvent | DoneEvent | ErrorEvent
WorkerEvent = Annotated[AnyEvent, Field(discriminator="kind")]
_EVENTS: TypeAdapter[WorkerEvent] = TypeAdapter(WorkerEvent)


class Progress(Protocol):
    """A step's progress: the loop's StepReport, or the StepEvent a worker sent."""

    @property
    def step(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def loss(self) -> float: ...
    @property
    def lr(self) -> float: ...
    @property
    def rate(self) -> float: ...
    @property
    def eta_s(self) -> float: ...


def format_step(report: Progress) -> str:
    eta = str(dt.timedelta(seconds=round(report.eta_s)))
    return (
        f"step {report.step}/{report.total}  loss {report.loss:.4f}  lr {report.lr:.2e}  "
        f"{report.rate:.2f} step/s  ETA {eta}"
    )


def event_line(event: AnyEvent) -> str:
    return EVENT_PREFIX + event.model_dump_json()


def parse_event(line: str) -> WorkerEvent | None:
    """The event a line carries, or None for plain output (a malformed event line counts as plain)."""
    if not line.startswith(EVENT_PREFIX):
        return None
    try:
        return _EVENTS.validate_json(line[len(EVENT_PREFIX) :])
    except ValidationError:
        return None

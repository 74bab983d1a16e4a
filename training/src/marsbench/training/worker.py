"""A training worker: runs one `TrainConfig` (from a JSON file) and reports events on stdout.

Started by `marsbench.training.launch` as `python -m marsbench.training --config FILE`, alone or as
each of torchrun's processes (`torchrun --standalone --nproc-per-node N -m marsbench.training ...`),
which set RANK and WORLD_SIZE; `marsbench.training.runner.train` does the rest.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from marsbench.datasets.errors import DatasetError
from marsbench.training.config import TrainConfig
from marsbench.training.events import (
    AnyEvent,
    DoneEvent,
    ErrorEvent,
    LogEvent,
    RankEvent,
    StepEvent,
    event_line,
)
from marsbench.training.loop import StepReport

# Errors that are the run's inputs' fault: reported by their message, without a traceback.
EXPECTED_ERRORS: tuple[type[Exception], ...] = (ValueError, DatasetError, FileNotFoundError, ValidationError)


def emit(event: AnyEvent) -> None:
    """One event line in one write: torchrun's ranks share the pipe, and a pipe keeps a write of up
    to PIPE_BUF (4096) bytes whole, where print's two writes (text, then newline) could interleave."""
    sys.stdout.flush()  # whatever the libraries printed goes first
    os.write(sys.stdout.fileno(), (event_line(event) + "\n").encode("utf-8"))


def step_event(report: StepReport) -> StepEvent:
    return StepEvent(
        step=report.step, total=report.total, loss=report.loss, lr=report.lr, rate=report.rate,
        eta_s=report.eta_s,
    )  # fmt: skip


def log(message: str) -> None:
    emit(LogEvent(message=message))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m marsbench.training", description=__doc__)
    parser.add_argument("--config", required=True, type=Path, help="A TrainConfig as JSON.")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))  # torchrun's; 0 for a worker on its own
    from marsbench.training.runner import train  # torch and open_clip: after the arguments are read

    try:
        config = TrainConfig.model_validate_json(args.config.read_text())
        outcome = train(config, on_step=lambda r: emit(step_event(r)), log=log)
    except Exception as exc:
        if not isinstance(exc, EXPECTED_ERRORS):
            traceback.print_exc(file=sys.stderr)
        emit(ErrorEvent(rank=rank, type=type(exc).__name__, message=str(exc)))
        return 1
    world = int(os.environ.get("WORLD_SIZE", "1"))
    written = [str(path) for path in outcome.written]
    emit(RankEvent(rank=rank, world_size=world, steps=outcome.record.steps, written=written))
    if rank == 0:
        emit(DoneEvent(record=str(outcome.record_path)))
    return 0

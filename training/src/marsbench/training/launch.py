"""Training in child processes: one worker, or `nproc` of them under torchrun (DDP).

`marsbench train --nproc N` and the trainer app both start the run this way: the `TrainConfig` is
written as JSON, `python -m marsbench.training --config FILE` runs it (through
`python -m torch.distributed.run --standalone --nproc-per-node N` when N > 1: torchrun on a free
local port), and the parent follows the workers' events on their merged stdout
(marsbench.training.events). The run's files are written by rank 0 as in a one-process run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from marsbench.files import write_text_atomic
from marsbench.training.config import TrainConfig
from marsbench.training.events import DoneEvent, ErrorEvent, RankEvent, WorkerEvent, parse_event

CONFIG_FILE = "config.json"
TAIL_LINES = 20  # of plain output, for the message of a run that died without an error event
STOP_GRACE_S = 15.0  # torchrun forwards SIGTERM to its workers and waits for them

EventFn = Callable[[WorkerEvent], None]
LineFn = Callable[[str], None]


class TrainingFailed(RuntimeError):
    """The workers exited without finishing the run; the message says why (the worker's error)."""


def worker_command(config_file: Path, nproc: int = 1) -> list[str]:
    worker = ["-m", "marsbench.training", "--config", str(config_file)]
    if nproc == 1:
        return [sys.executable, *worker]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    return [*torchrun, *worker]


@dataclass(slots=True)
class WorkerResult:
    returncode: int
    done: DoneEvent | None = None
    errors: list[ErrorEvent] = field(default_factory=list)
    ranks: list[RankEvent] = field(default_factory=list)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))

    def failure(self) -> str:
        """Why the run failed: the first rank's error, else the exit status and the last output."""
        if self.errors:
            first = min(self.errors, key=lambda e: e.rank)
            return f"{first.type}: {first.message}"
        last = "\n".join(self.tail)
        return f"training exited with status {self.returncode} without finishing; last output:\n{last}"


class WorkerRun:
    """A started run (one process, or torchrun and its workers); `follow` reads it to its end."""

    def __init__(self, config: TrainConfig, *, nproc: int, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        config_file = workdir / CONFIG_FILE
        write_text_atomic(config_file, config.model_dump_json(indent=2))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # events arrive as they happen
        if nproc > 1:  # torchrun's own default (1), set here so it does not print a banner about it
            env.setdefault("OMP_NUM_THREADS", str(config.threads or 1))
        self.nproc = nproc
        self._proc = subprocess.Popen(
            worker_command(config_file, nproc), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            bufsize=1, env=env,
        )  # fmt: skip

    def follow(self, on_event: EventFn | None = None, on_line: LineFn | None = None) -> WorkerResult:
        """Every event and plain line until the workers exit; then their exit status."""
        result = WorkerResult(returncode=0)
        assert self._proc.stdout is not None  # opened as a pipe above
        for raw in self._proc.stdout:
            line = raw.rstrip("\n")
            event = parse_event(line)
            if event is None:
                result.tail.append(line)
                if on_line is not None:
                    on_line(line)
                continue
            if isinstance(event, DoneEvent):
                result.done = event
            elif isinstance(event, ErrorEvent):
                result.errors.append(event)
            elif isinstance(event, RankEvent):
                result.ranks.append(event)
            if on_event is not None:
                on_event(event)
        result.returncode = self._proc.wait()
        return result

    def stop(self) -> None:
        """Terminate the run (torchrun passes the signal on to its workers); kill it if it lingers."""
        if self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()


def record_of(result: WorkerResult) -> Path:
    """The training record of a finished run, or TrainingFailed saying why it did not finish."""
    if result.returncode != 0 or result.done is None:
        raise TrainingFailed(result.failure())
    return Path(result.done.record)


def run_training(
    config: TrainConfig,
    *,
    nproc: int,
    workdir: Path,
    on_event: EventFn | None = None,
    on_line: LineFn | None = None,
) -> tuple[Path, WorkerResult]:
    """Run `config` in `nproc` worker processes to the end (blocking): its training record and the
    workers' reports. Raises TrainingFailed when they do not finish. (This module imports no torch:
    `marsbench.training.runner.outcome_from_record` reads the record into a TrainOutcome.)"""
    result = WorkerRun(config, nproc=nproc, workdir=workdir).follow(on_event, on_line)
    return record_of(result), result

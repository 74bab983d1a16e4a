"""Progress lines for long jobs: items, percentage, rate and ETA, redrawn in place on a terminal."""

from __future__ import annotations

import sys
from typing import TextIO

from marsbench.schemas.jobs import JobState, JobStatus


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def job_line(job: JobStatus) -> str:
    total = f"/{job.total}" if job.total is not None else ""
    percent = f" ({100 * job.done / job.total:5.1f}%)" if job.total else ""
    rate = f"{job.rate:.1f} items/s" if job.rate else "- items/s"
    return (
        f"indexing {job.task} [{job.state}] {job.done}{total}{percent} {rate} "
        f"ETA {format_duration(job.eta_s)} skipped {job.skipped}"
    )


class JobProgress:
    """Callable for `IndexerClient.wait(on_progress=...)`."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._last = ""

    def __call__(self, job: JobStatus) -> None:
        line = job_line(job)
        finished = job.state in (JobState.SUCCEEDED, JobState.FAILED)
        if self._tty:
            self._stream.write("\r" + line.ljust(len(self._last)) + ("\n" if finished else ""))
            self._stream.flush()
        elif finished or line != self._last:
            self._stream.write(line + "\n")
        self._last = line

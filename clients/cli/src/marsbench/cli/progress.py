"""Progress of long jobs: a bar with items, percentage, rate and ETA, redrawn in place on a terminal
(one line per change otherwise, for logs), fed by the indexer's job API."""

from __future__ import annotations

import sys
from typing import TextIO

from marsbench.schemas.jobs import JobState, JobStatus

BAR_WIDTH = 24
_FINISHED = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_bar(fraction: float | None, width: int = BAR_WIDTH) -> str:
    """`[#########---------]`; unknown totals (still being counted) show an empty bar of `?`."""
    if fraction is None:
        return "[" + "?" * width + "]"
    filled = round(min(max(fraction, 0.0), 1.0) * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def job_fraction(job: JobStatus) -> float | None:
    """Items handled (written or skipped) over the dataset's items; None until counted."""
    if not job.total:
        return None
    return (job.done + job.skipped) / job.total


def job_line(job: JobStatus) -> str:
    fraction = job_fraction(job)
    total = f"/{job.total}" if job.total is not None else ""
    percent = f"{100 * fraction:5.1f}%" if fraction is not None else "  ?  %"
    rate = f"{job.rate:.1f} items/s" if job.rate else "- items/s"
    line = (
        f"indexing {job.task} [{job.state}] {progress_bar(fraction)} {percent} {job.done}{total} {rate} "
        f"ETA {format_duration(job.eta_s)} skipped {job.skipped}"
    )
    if job.error and job.state is not JobState.SUCCEEDED:
        line += f" | {job.error}"  # why it failed, or the outage it is retrying after
    return line


class JobProgress:
    """Callable for `IndexerClient.wait(on_progress=...)`."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._last = ""

    def __call__(self, job: JobStatus) -> None:
        line = job_line(job)
        finished = job.state in _FINISHED
        if self._tty:
            self._stream.write("\r" + line.ljust(len(self._last)) + ("\n" if finished else ""))
            self._stream.flush()
        elif finished or line != self._last:
            self._stream.write(line + "\n")
        self._last = line

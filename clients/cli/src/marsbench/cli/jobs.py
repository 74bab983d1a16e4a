"""`marsbench jobs`: the indexer's jobs as a table, with their progress, tries and errors."""

from __future__ import annotations

from collections.abc import Sequence

from marsbench.cli.progress import format_duration, job_fraction, progress_bar
from marsbench.cli.tables import render_table
from marsbench.schemas.jobs import JobState, JobStatus

_ERROR_CHARS = 60


def jobs_table(jobs: Sequence[JobStatus]) -> str:
    headers = [
        "job",
        "state",
        "task",
        "model",
        "progress",
        "done",
        "rate/s",
        "ETA",
        "skipped",
        "tries",
        "error",
    ]
    rows = []
    for job in jobs:
        fraction = job_fraction(job)
        percent = f"{100 * fraction:.1f}%" if fraction is not None else "?"
        error = (job.error or "")[:_ERROR_CHARS] + ("..." if len(job.error or "") > _ERROR_CHARS else "")
        rows.append(
            [
                job.id,
                job.state.value,
                job.task.value,
                job.model,
                f"{progress_bar(fraction, 12)} {percent}",
                f"{job.done}/{job.total if job.total is not None else '?'}",
                f"{job.rate:.1f}" if job.rate else "-",
                format_duration(job.eta_s) if job.state is JobState.RUNNING else "-",
                str(job.skipped),
                str(job.attempts),
                error,
            ]
        )
    return render_table(headers, rows) if rows else "no jobs"

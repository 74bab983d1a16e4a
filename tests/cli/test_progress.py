"""Progress bars and the jobs table, from job statuses as the indexer reports them."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from marsbench.cli.jobs import jobs_table
from marsbench.cli.progress import JobProgress, job_line, progress_bar
from marsbench.schemas.jobs import JobState, JobStatus, TaskName


def status(**changes: object) -> JobStatus:
    now = datetime(2026, 11, 27, tzinfo=UTC)
    base = {
        "id": "abc123",
        "task": TaskName.GEOLOCALIZATION,
        "model": "marsbench-tiny",
        "dataset_dir": "/data/geo",
        "collection": "geolocalization__marsbench-tiny__0123",
        "state": JobState.RUNNING,
        "total": 800,
        "done": 396,
        "skipped": 4,
        "rate": 12.5,
        "eta_s": 32.0,
        "created_at": now,
        "updated_at": now,
    }
    return JobStatus.model_validate(base | changes)


def test_progress_bar_fills_in_proportion_and_clamps() -> None:
    assert progress_bar(0.0, 10) == "[----------]"
    assert progress_bar(0.5, 10) == "[#####-----]"
    assert progress_bar(1.0, 10) == "[##########]"
    assert progress_bar(1.7, 4) == "[####]"
    assert progress_bar(None, 4) == "[????]"


def test_job_line_counts_written_and_skipped_items_as_progress() -> None:
    line = job_line(status())
    assert "[running] [############------------]  50.0% 396/800 12.5 items/s ETA 0:32 skipped 4" in line
    assert "?" in job_line(status(total=None, rate=None, eta_s=None))


def test_a_retrying_or_failed_job_shows_why() -> None:
    retrying = status(error="retrying in 5 s after: ServiceUnavailable: no answer")
    assert job_line(retrying).endswith("| retrying in 5 s after: ServiceUnavailable: no answer")
    assert "|" not in job_line(status(state=JobState.SUCCEEDED, error=None, done=796))


def test_progress_writes_one_line_per_change_when_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = JobProgress(stream)
    for job in (status(), status(), status(done=500), status(state=JobState.SUCCEEDED, done=796)):
        progress(job)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and "100.0%" in lines[-1] and "[succeeded]" in lines[-1]


def test_jobs_table_lists_state_progress_tries_and_a_short_error() -> None:
    failed = status(id="def456", state=JobState.FAILED, attempts=5, error="StoreUnavailable: " + "x" * 200)
    table = jobs_table([status(attempts=1), failed])
    header, _, first, second = table.splitlines()
    assert header.split()[:5] == ["job", "state", "task", "model", "progress"]
    assert first.startswith("abc123") and "50.0%" in first and "396/800" in first and "0:32" in first
    assert second.startswith("def456") and " failed " in second and "StoreUnavailable: xxx" in second
    assert second.endswith("...") and len(second) < 200
    assert jobs_table([]) == "no jobs"

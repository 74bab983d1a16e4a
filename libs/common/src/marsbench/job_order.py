"""Which of a collection's indexing jobs says its state: one rule for the indexer and the evaluator.

Jobs are listed oldest-created first, but creation order is not the order things happened: a
failed job resumed to success ends after a job created (and failed) in between, so "the last one
listed" let an older failure hide a later success. The current job is therefore:

- a job that is queued or running, if any (something is writing the collection now: not complete);
  the most recently created of them;
- else the job whose last state change (`updated_at`, its end) is the latest: a success that ended
  after a failure wins, and a failure that ended after a success (which may have started the
  collection over) is not hidden by it either.
"""

from __future__ import annotations

from collections.abc import Iterable

from marsbench.schemas.jobs import JobState, JobStatus

ACTIVE_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})


def current_job(jobs: Iterable[JobStatus]) -> JobStatus | None:
    """The job whose state is the collection's (see the module docs); None for no job."""
    listed = list(jobs)
    active = [job for job in listed if job.state in ACTIVE_STATES]
    if active:
        return max(active, key=lambda job: job.created_at)
    return max(listed, key=lambda job: (job.updated_at, job.created_at), default=None)

"""Indexer settings (prefix `MARSBENCH_`, plus `QDRANT_URL`)."""

from __future__ import annotations

from pydantic import Field

from marsbench.settings import ServiceSettings


class IndexerSettings(ServiceSettings):
    index_batch_size: int = Field(default=64, ge=1, le=1000, description="Images per encoder request.")
    index_in_flight: int = Field(
        default=3, ge=1, description="Batches being encoded or written at once (overlaps I/O and compute)."
    )
    resume_jobs: bool = Field(default=True, description="Restart unfinished jobs found at start-up.")
    job_retries: int = Field(
        default=4,
        ge=0,
        description="Automatic retries of a job after a transient failure (encoder or Qdrant unreachable); "
        "then it fails with the reason and `POST /v1/jobs/{id}/resume` continues it.",
    )
    job_retry_backoff_s: float = Field(
        default=5.0, ge=0, description="Wait before the first retry; doubled for each further one."
    )
    min_free_disk_mb: int = Field(
        default=512,
        ge=0,
        description="Free space (MB) the data folder's disk must keep: a job checks it before it starts and "
        "before each batch it writes, and fails with the reason (resumable) below it. The embedded store "
        "writes through memory maps, where running out of space kills the process (SIGBUS). 0: no check.",
    )

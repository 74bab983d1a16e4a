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

"""Indexer domain errors; `marsbench.indexer.api.errors` maps them to statuses.

IndexerError
├── JobNotFound        404
├── JobConflict        409  the job cannot do that in its state (resume a running job, ...)
└── InvalidJob         422  the dataset folder or task cannot be indexed (the message says why)
"""

from __future__ import annotations


class IndexerError(Exception):
    pass


class JobNotFound(IndexerError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r}; GET /v1/jobs lists them")


class InvalidJob(IndexerError):
    pass


class JobConflict(IndexerError):
    pass

"""Indexer domain errors; `marsbench.indexer.api.errors` maps them to statuses.

IndexerError
├── JobNotFound        404
├── NotFound           404  an unknown collection or snapshot
├── JobConflict        409  the job cannot do that in its state (resume a running job, ...)
│   └── CollectionBusy 409  a job writes the collection, or it already exists (import)
└── InvalidJob         422  the dataset folder or task cannot be indexed (the message says why)
    └── InvalidSnapshot 422 the snapshot file is not one this store can import
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


class NotFound(IndexerError):
    pass


class CollectionBusy(JobConflict):
    pass


class InvalidSnapshot(InvalidJob):
    pass

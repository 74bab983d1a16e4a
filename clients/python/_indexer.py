"""Client of the indexer service."""

from __future__ import annotations

import time
from collections.abc import Callable

from marsbench.client._base import BaseClient
from marsbench.schemas.jobs import CollectionList, CollectionOut, JobCreate, JobList, JobState, JobStatus

_FINISHED = {JobState.SUCCEEDED, JobState.FAILED}


class IndexerClient(BaseClient):
    def create_job(self, job: JobCreate) -> JobStatus:
        response = self.request("POST", "/v1/jobs", json=job.model_dump(mode="json"))
        return JobStatus.model_validate(response.json())

    def job(self, job_id: str) -> JobStatus:
        return JobStatus.model_validate(self.request("GET", f"/v1/jobs/{job_id}").json())

    def jobs(self, collection: str | None = None) -> list[JobStatus]:
        """Jobs, oldest first; with `collection`, only those writing it."""
        params = {"collection": collection} if collection else None
        return JobList.model_validate(self.request("GET", "/v1/jobs", params=params).json()).data

    def resume(self, job_id: str) -> JobStatus:
        """Continue a failed job where it stopped (409 unless it failed)."""
        return JobStatus.model_validate(self.request("POST", f"/v1/jobs/{job_id}/resume").json())

    def collections(self) -> list[CollectionOut]:
        return CollectionList.model_validate(self.request("GET", "/v1/collections").json()).data

    def wait(
        self,
        job_id: str,
        *,
        poll_s: float = 0.5,
        on_progress: Callable[[JobStatus], None] | None = None,
    ) -> JobStatus:
        """Poll until the job has finished, reporting each status to `on_progress`."""
        while True:
            status = self.job(job_id)
            if on_progress is not None:
                on_progress(status)
            if status.state in _FINISHED:
                return status
            time.sleep(poll_s)

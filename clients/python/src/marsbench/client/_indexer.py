"""Client of the indexer service."""

from __future__ import annotations

import time
from collections.abc import Callable

from marsbench.client._base import BaseClient
from marsbench.schemas.jobs import (
    CollectionDeleted,
    CollectionList,
    CollectionOut,
    JobCreate,
    JobList,
    JobState,
    JobStatus,
    SnapshotImport,
    SnapshotOut,
)

# A snapshot of a large collection takes minutes to write or to unpack and check.
_SNAPSHOT_TIMEOUT_S = 3600.0
_FINISHED = {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}


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
        """Continue a failed or cancelled job where it stopped (409 otherwise)."""
        return JobStatus.model_validate(self.request("POST", f"/v1/jobs/{job_id}/resume").json())

    def cancel(self, job_id: str) -> JobStatus:
        """Stop a queued or running job at its next batch boundary (409 if it has finished); `wait`
        then returns it `cancelled`."""
        return JobStatus.model_validate(self.request("POST", f"/v1/jobs/{job_id}/cancel").json())

    def collections(self) -> list[CollectionOut]:
        return CollectionList.model_validate(self.request("GET", "/v1/collections").json()).data

    def delete_collection(self, name: str) -> CollectionDeleted:
        """Drop a collection and its points (404 if unknown, 409 while a job writes it)."""
        return CollectionDeleted.model_validate(self.request("DELETE", f"/v1/collections/{name}").json())

    def export_snapshot(self, name: str) -> SnapshotOut:
        """Snapshot a collection into the indexer's `<data dir>/snapshots/`; returns the file's name."""
        return SnapshotOut.model_validate(
            self.request("POST", f"/v1/collections/{name}/snapshot", timeout=_SNAPSHOT_TIMEOUT_S).json()
        )

    def import_snapshot(self, snapshot: str, collection: str | None = None) -> CollectionOut:
        """Create a collection from a snapshot (its name in the indexer's snapshots folder); by default
        the collection it was taken of, which must not exist."""
        body = SnapshotImport(snapshot=snapshot, collection=collection).model_dump(mode="json")
        answer = self.request("POST", "/v1/collections/import", json=body, timeout=_SNAPSHOT_TIMEOUT_S)
        return CollectionOut.model_validate(answer.json())

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

"""`/v1/jobs`: start an indexing job and follow its progress."""

from __future__ import annotations

from fastapi import APIRouter, status

from marsbench.indexer.api.deps import JobsDep
from marsbench.schemas.jobs import JobCreate, JobList, JobStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post("", status_code=status.HTTP_202_ACCEPTED)
def create_job(request: JobCreate, jobs: JobsDep) -> JobStatus:
    """Index a dataset into the collection for (task, model, data); returns the job at once."""
    return jobs.submit(request)


@router.get("")
def list_jobs(jobs: JobsDep) -> JobList:
    return JobList(data=jobs.list())


@router.get("/{job_id}")
def get_job(job_id: str, jobs: JobsDep) -> JobStatus:
    return jobs.get(job_id)

"""`/v1/jobs`: start an indexing job and follow its progress."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from marsbench.http import GUARDED, WITH_BODY, error_responses
from marsbench.indexer.api.deps import JobsDep
from marsbench.schemas.jobs import JobCreate, JobList, JobStatus
from marsbench.security import DatasetRootsDep

# Job ids are 12 hex digits; anything far longer is refused before it is looked up.
MAX_ID_CHARS = 64

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=error_responses(*GUARDED))


@router.post("", status_code=status.HTTP_202_ACCEPTED, responses=error_responses(*WITH_BODY, 403, 503))
def create_job(request: JobCreate, jobs: JobsDep, roots: DatasetRootsDep) -> JobStatus:
    """Index a dataset into the collection for (task, model, data); returns the job at once.
    The folder must lie under MARSBENCH_DATASET_ROOTS (403 otherwise)."""
    # The resolved path goes on: the job reads what was checked, even if a link changes later.
    dataset_dir = str(roots.confine(request.dataset_dir))
    return jobs.submit(request.model_copy(update={"dataset_dir": dataset_dir}))


@router.get("")
def list_jobs(
    jobs: JobsDep,
    collection: Annotated[
        str | None, Query(max_length=255, description="Only the jobs that write this collection.")
    ] = None,
) -> JobList:
    """Jobs, oldest first (the last one for a collection is its current state)."""
    return JobList(data=jobs.list(collection))


@router.get("/{job_id}", responses=error_responses(404))
def get_job(job_id: Annotated[str, Path(max_length=MAX_ID_CHARS)], jobs: JobsDep) -> JobStatus:
    return jobs.get(job_id)


@router.post("/{job_id}/resume", status_code=status.HTTP_202_ACCEPTED, responses=error_responses(404, 409))
def resume_job(job_id: Annotated[str, Path(max_length=MAX_ID_CHARS)], jobs: JobsDep) -> JobStatus:
    """Continue a failed or cancelled job where it stopped (what it wrote is kept); 409 otherwise."""
    return jobs.resume(job_id)


@router.post("/{job_id}/cancel", status_code=status.HTTP_202_ACCEPTED, responses=error_responses(404, 409))
def cancel_job(job_id: Annotated[str, Path(max_length=MAX_ID_CHARS)], jobs: JobsDep) -> JobStatus:
    """Stop a queued or running job at its next batch boundary (state `cancelled` then); what it wrote
    is kept and resume continues it. 409 for a job that has finished."""
    return jobs.cancel(job_id)

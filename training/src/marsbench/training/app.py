"""`create_app(settings)`: the trainer app, `POST /v1/train` and `GET /v1/train/{id}`.

    uvicorn --factory marsbench.training.app:create_app --port 8004

A job is `marsbench train`'s options (`TrainJobCreate`, marsbench.schemas.training) plus the paired
dataset folder and an output folder name; jobs run one at a time, in worker processes
(marsbench.training.jobs). Like the other services, the app refuses to listen beyond loopback
without an API key and dataset roots (marsbench.security), confines `dataset_dir` and `registry`
to MARSBENCH_DATASET_ROOTS (403), and answers every error in the one error body (marsbench.http).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Path, Request, status
from fastapi.responses import JSONResponse

from marsbench.http import (
    GUARDED,
    WITH_BODY,
    error_response,
    error_responses,
    install_error_bodies,
    probes_router,
    status_for,
)
from marsbench.observability import install_observability
from marsbench.schemas.training import TrainJobCreate, TrainJobList, TrainJobStatus
from marsbench.security import DatasetRootsDep, install_security
from marsbench.training.jobs import (
    InvalidTrainJob,
    TrainJobConflict,
    TrainJobError,
    TrainJobNotFound,
    TrainJobs,
)
from marsbench.training.settings import TrainerSettings

MAX_ID_CHARS = 64  # job ids are 12 hex digits; far longer ones are refused before a look-up

STATUS: dict[type[Exception], int] = {TrainJobNotFound: 404, TrainJobConflict: 409, InvalidTrainJob: 422}


def get_jobs(request: Request) -> TrainJobs:
    jobs: TrainJobs = request.app.state.jobs
    return jobs


JobsDep = Annotated[TrainJobs, Depends(get_jobs)]
JobId = Annotated[str, Path(max_length=MAX_ID_CHARS)]

router = APIRouter(prefix="/v1/train", tags=["training"], responses=error_responses(*GUARDED))


@router.post("", status_code=status.HTTP_202_ACCEPTED, responses=error_responses(*WITH_BODY, 403, 409))
def create_job(request: TrainJobCreate, jobs: JobsDep, roots: DatasetRootsDep) -> TrainJobStatus:
    """Queue a fine-tuning run; returns the job at once (state `queued`). `dataset_dir` and the
    `registry` files must lie under MARSBENCH_DATASET_ROOTS (403 otherwise); 409 while another queued
    or running job writes the same `out` folder."""
    # The resolved paths go on: the run reads what was checked, even if a link changes later.
    confined = request.model_copy(
        update={
            "dataset_dir": str(roots.confine(request.dataset_dir)),
            "registry": [str(roots.confine(path)) for path in request.registry],
        }
    )
    return jobs.submit(confined)


@router.get("")
def list_jobs(jobs: JobsDep) -> TrainJobList:
    """Training jobs, oldest first."""
    return TrainJobList(data=jobs.list())


@router.get("/{job_id}", responses=error_responses(404))
def get_job(job_id: JobId, jobs: JobsDep) -> TrainJobStatus:
    """State, step of total, the loss curve so far, rate and ETA; the outputs once it succeeded."""
    return jobs.get(job_id)


@router.post("/{job_id}/cancel", status_code=status.HTTP_202_ACCEPTED, responses=error_responses(404, 409))
def cancel_job(job_id: JobId, jobs: JobsDep) -> TrainJobStatus:
    """Stop a queued or running job (its last checkpoint stays: a job naming the same `out` resumes
    from it); 409 for a job that has finished."""
    return jobs.cancel(job_id)


async def _error(request: Request, exc: Exception) -> JSONResponse:
    return error_response(exc, status_for(exc, STATUS))


def create_app(settings: TrainerSettings | None = None) -> FastAPI:
    """Build the app; the job thread starts with the app's lifespan and stops with it."""
    settings = settings or TrainerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        jobs = TrainJobs(
            settings.train_dir, registry=settings.encoder_registry,
            dataset_roots=app.state.dataset_roots.roots,  # set by install_security
            max_nproc=settings.train_max_nproc,
        )  # fmt: skip
        app.state.jobs = jobs
        try:
            yield
        finally:
            await asyncio.to_thread(jobs.shutdown)  # stops a running job: off the event loop

    app = FastAPI(title="marsbench trainer", version="1", lifespan=lifespan)
    app.add_exception_handler(TrainJobError, _error)
    install_error_bodies(app)  # validation and routing errors in the same ErrorBody
    app.include_router(probes_router())
    app.include_router(router)
    install_security(app, settings)  # before observability: its middleware then sees our 401s/413s
    install_observability(app, "trainer")
    return app

"""Training jobs of the trainer app: accepted, queued, run one at a time in worker processes.

Each job's run is `marsbench.training.launch.WorkerRun` (one process, or torchrun with `nproc`),
started by a single background thread in submission order; its events update the job's status
(step, loss curve, rate, ETA) as they arrive, and its training record fills the outputs at the end.
Jobs live in memory: a restarted app knows none, but a job naming an earlier job's `out` folder
resumes from that folder's checkpoint.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from marsbench.schemas.jobs import JobState
from marsbench.schemas.training import CurvePoint, TrainJobCreate, TrainJobStatus, TrainOutputs
from marsbench.training.config import TrainConfig, TrainingRecord, training_config
from marsbench.training.events import StepEvent, WorkerEvent
from marsbench.training.launch import TrainingFailed, WorkerRun, record_of

JOBS_DIR = ".jobs"
LOG_FILE = "output.log"
ACTIVE = (JobState.QUEUED, JobState.RUNNING)


class TrainJobError(Exception):
    """Base of the trainer's own errors (each mapped to one status in marsbench.training.app)."""


class TrainJobNotFound(TrainJobError):
    pass


class TrainJobConflict(TrainJobError):
    """The job, or the output folder it names, is not in a state that allows the request."""


class InvalidTrainJob(TrainJobError):
    """A request that passed the schema but cannot run (no such folder, too many processes, ...)."""


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(slots=True)
class _Job:
    status: TrainJobStatus
    config: TrainConfig
    run: WorkerRun | None = None
    cancel_requested: bool = False


def outputs_of(record_path: Path, record: TrainingRecord) -> TrainOutputs:
    return TrainOutputs(
        name=record.name, out_dir=str(record_path.parent), checkpoint=record.checkpoint.path,
        checkpoint_sha256=record.checkpoint.sha256, record=str(record_path),
        registry_file=record.registry_file,
        heldout_dir=record.data.split.heldout_dir, loss_curve=record.loss_curve,
        resumed_from_step=record.resumed_from_step, world_size=record.world_size,
    )  # fmt: skip


def full_curve(record: TrainingRecord) -> list[CurvePoint]:
    """Every step's loss and learning rate, from step 1 (the loop records both on every step)."""
    pairs = zip(record.losses, record.lrs, strict=True)
    return [CurvePoint(step=step, loss=loss, lr=lr) for step, (loss, lr) in enumerate(pairs, start=1)]


def apply_step(status: TrainJobStatus, event: StepEvent) -> None:
    """A step the worker reported: progress, rate, ETA and one more point of the curve."""
    status.step, status.total, status.loss = event.step, event.total, event.loss
    status.rate, status.eta_s = event.rate, event.eta_s
    status.curve.append(CurvePoint(step=event.step, loss=event.loss, lr=event.lr))


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'job'}: {e['msg']}" for e in exc.errors())


class TrainJobs:
    """The job table and the one thread that runs them."""

    def __init__(
        self, train_dir: Path, *, registry: Sequence[Path] = (), dataset_roots: Sequence[Path] = (),
        max_nproc: int = 8,
    ) -> None:  # fmt: skip
        self._dir = Path(train_dir).expanduser().resolve()
        self._registry = list(registry)
        self._roots = list(dataset_roots)
        self._max_nproc = max_nproc
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="marsbench-trainer", daemon=True)
        self._thread.start()

    # -- requests ---------------------------------------------------------------------------------

    def submit(self, request: TrainJobCreate) -> TrainJobStatus:
        """Queue `request` (its dataset_dir and registry files already confined to the roots)."""
        data_dir = Path(request.dataset_dir)
        if not data_dir.is_dir():
            raise InvalidTrainJob(f"dataset_dir {request.dataset_dir} is not a folder the trainer can read")
        for registry in request.registry:
            if not Path(registry).is_file():
                raise InvalidTrainJob(f"registry file {registry} does not exist")
        if request.nproc > self._max_nproc:
            raise InvalidTrainJob(
                f"nproc {request.nproc} is over the limit of {self._max_nproc} (MARSBENCH_TRAIN_MAX_NPROC)"
            )
        job_id = uuid.uuid4().hex[:12]
        out_dir = self._dir / (request.out or job_id)
        try:
            config = training_config(
                request, data_dir=data_dir, out_dir=out_dir,
                registry=[*self._registry, *map(Path, request.registry)], dataset_roots=self._roots,
            )  # fmt: skip
        except ValidationError as exc:
            raise InvalidTrainJob(f"invalid training options: {_validation_message(exc)}") from None
        if config.batch_size % request.nproc:
            raise InvalidTrainJob(f"batch_size {config.batch_size} does not split over nproc {request.nproc}")
        status = TrainJobStatus(
            id=job_id, state=JobState.QUEUED, request=request, out_dir=str(out_dir), total=config.steps,
            created_at=now(),
        )  # fmt: skip
        with self._lock:
            if self._closed:
                raise TrainJobConflict("the trainer is shutting down; submit the job again once it is back")
            busy = next(
                (j for j in self._jobs.values() if j.status.state in ACTIVE and j.config.out_dir == out_dir),
                None,
            )
            if busy is not None:
                raise TrainJobConflict(
                    f"job {busy.status.id} ({busy.status.state}) already writes {out_dir}; wait for it or "
                    "name another `out`"
                )
            self._jobs[job_id] = _Job(status, config)
        self._queue.put(job_id)
        return self.get(job_id)

    def get(self, job_id: str) -> TrainJobStatus:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise TrainJobNotFound(f"no training job {job_id!r}; GET /v1/train lists them")
            return job.status.model_copy(deep=True)

    def list(self) -> list[TrainJobStatus]:
        with self._lock:
            return [job.status.model_copy(deep=True) for job in self._jobs.values()]

    def cancel(self, job_id: str) -> TrainJobStatus:
        """A queued job is cancelled at once; a running one is stopped (its checkpoint is kept, so a
        job naming the same `out` resumes from it); a finished one is a conflict."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise TrainJobNotFound(f"no training job {job_id!r}; GET /v1/train lists them")
            if job.status.state not in ACTIVE:
                raise TrainJobConflict(f"training job {job_id} has finished ({job.status.state})")
            job.cancel_requested = True
            if job.status.state == JobState.QUEUED:
                self._finish(job, JobState.CANCELLED)
            run = job.run
        if run is not None:
            run.stop()
        return self.get(job_id)

    def shutdown(self) -> None:
        """Stop taking jobs, stop the running one, and wait for the thread."""
        with self._lock:
            self._closed = True
            for job in self._jobs.values():
                if job.status.state in ACTIVE:
                    job.cancel_requested = True
                    if job.status.state == JobState.QUEUED:
                        self._finish(job, JobState.CANCELLED)
            running = [job.run for job in self._jobs.values() if job.run is not None]
        for run in running:
            run.stop()
        self._queue.put(None)
        self._thread.join()

    # -- the worker thread ------------------------------------------------------------------------

    def _work(self) -> None:
        while (job_id := self._queue.get()) is not None:
            with self._lock:
                job = self._jobs[job_id]
                if job.status.state != JobState.QUEUED:  # cancelled while it waited
                    continue
            self._run(job)

    def _run(self, job: _Job) -> None:
        workdir = self._dir / JOBS_DIR / job.status.id
        with self._lock:
            if job.cancel_requested:
                return
            job.status.state, job.status.started_at = JobState.RUNNING, now()
            try:
                job.run = WorkerRun(job.config, nproc=job.status.request.nproc, workdir=workdir)
            except OSError as exc:
                job.status.error = f"could not start training: {exc}"
                self._finish(job, JobState.FAILED)
                return
        run = job.run
        with (workdir / LOG_FILE).open("w", encoding="utf-8") as log:
            result = run.follow(lambda event: self._on_event(job, event), lambda line: print(line, file=log))
        with self._lock:
            job.run = None
            try:
                record_path = record_of(result)
            except TrainingFailed as exc:
                if job.cancel_requested:
                    self._finish(job, JobState.CANCELLED)
                else:
                    job.status.error = str(exc)
                    self._finish(job, JobState.FAILED)
                return
            record = TrainingRecord.model_validate_json(record_path.read_text())
            job.status.outputs = outputs_of(record_path, record)
            job.status.curve = full_curve(record)
            job.status.step = record.steps
            self._finish(job, JobState.SUCCEEDED)

    def _on_event(self, job: _Job, event: WorkerEvent) -> None:
        if isinstance(event, StepEvent):
            with self._lock:
                apply_step(job.status, event)

    def _finish(self, job: _Job, state: JobState) -> None:
        job.status.state, job.status.finished_at = state, now()
        if state == JobState.SUCCEEDED:
            job.status.eta_s = 0.0
        else:
            job.status.eta_s = None

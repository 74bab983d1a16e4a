"""Indexing jobs: created by the API, run on background threads, persisted as JSON.

Each job's state lives in `<data_dir>/jobs/<id>.json`, rewritten as it progresses, so a
restarted indexer lists old jobs and resumes unfinished ones (the pipeline skips points that
are already stored). One job at a time writes a given collection: asking again for the same
collection while its job is active returns that job.

A transient failure (the encoder or a Qdrant server unreachable after the client's own retries)
is retried inside the job with exponential backoff, from where it stopped; when the retries run
out the job is failed with the reason, keeps what it wrote, and `resume` continues it on request.

A full disk is not waited out: the job checks the free space before it starts and before every batch
it writes (`min_free_disk_mb`), and fails with the reason before the store runs out (the embedded
engine writes through memory maps, where a full disk is a SIGBUS, not an error). Resuming continues
it once space is freed. A job that completes seals its collection (`VectorStore.seal`); a job that
finds its collection damaged deletes it and indexes it again from the start.

`cancel` stops a queued or running job at its next batch boundary (state `cancelled`; what it wrote
stays and `resume` continues it). Collections are deleted, exported to a snapshot file under
`<data_dir>/snapshots/` and imported from one here too, each refused while a job writes the collection.
"""

from __future__ import annotations

import builtins  # `builtins.list` in JobManager's annotations: its `list` method shadows the type
import contextlib
import contextvars
import logging
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict, Unpack

from marsbench.datasets.errors import DatasetError
from marsbench.datasets.records import SkipLog
from marsbench.files import check_free_space, file_sha256, is_disk_full, write_text_atomic
from marsbench.indexer.core.errors import (
    CollectionBusy,
    InvalidJob,
    InvalidSnapshot,
    JobConflict,
    JobNotFound,
    NotFound,
)
from marsbench.indexer.core.pipeline import IndexPipeline, PipelineTarget
from marsbench.indexer.core.ports import Encoder, ServiceUnavailable
from marsbench.indexer.core.progress import rate_and_eta
from marsbench.indexer.core.units import UnitTracker
from marsbench.job_order import current_job
from marsbench.schemas.jobs import (
    CollectionDeleted,
    CollectionOut,
    JobCreate,
    JobState,
    JobStatus,
    SkippedItemOut,
    SnapshotImport,
    SnapshotOut,
)
from marsbench.schemas.models import ModelInfo
from marsbench.store import (
    CollectionDamaged,
    CollectionExists,
    CollectionNotFound,
    EmbeddedStore,
    SnapshotInvalid,
    StoreUnavailable,
    VectorStore,
)
from marsbench.tasks import INDEXABLE, IndexedTask
from marsbench.tasks.base import ImageSource
from marsbench.tasks.modalities import indexing_needs, missing_modalities, refusal

log = logging.getLogger(__name__)
_ACTIVE = {JobState.QUEUED, JobState.RUNNING}
# Persist progress at most this often; the final state is always written.
_SAVE_EVERY_S = 1.0
# How long shutdown waits for jobs to reach a batch boundary (SIGTERM must end in a few seconds).
SHUTDOWN_S = 3.0
INTERRUPTED = "interrupted by shutdown; resumes at next start"
SNAPSHOT_SUFFIX = ".snapshot"


def is_transient(exc: BaseException) -> bool:
    """Failures a later attempt may not meet: a service unreachable, overloaded or restarting."""
    return isinstance(exc, ServiceUnavailable | StoreUnavailable)


class JobChanges(TypedDict, total=False):
    """The fields of a job's status that running it changes (`JobManager._update`)."""

    state: JobState
    error: str | None
    total: int | None
    done: int
    skipped: int
    skipped_items: list[SkippedItemOut]
    rate: float | None
    eta_s: float | None
    attempts: int
    weights: str | None
    preprocessing: str | None
    precision: str | None
    completed_units: list[str]


class JobManager:
    def __init__(
        self,
        store: VectorStore,
        embedder: Encoder,
        jobs_dir: Path,
        *,
        batch_size: int,
        in_flight: int,
        retries: int = 4,
        retry_backoff_s: float = 5.0,
        dataset_roots: Sequence[Path] = (),
        min_free_disk_mb: int = 0,
        disk_path: Path | None = None,
        snapshots_dir: Path | None = None,
        unit_flush_interval_s: float = 1.0,
    ) -> None:
        self._store = store
        # Finished units wait for the store's next flush (at most one per this interval; 0: one per
        # unit) before they are recorded: a flush costs about as much as writing 1,000 points.
        self._unit_flush_interval_s = unit_flush_interval_s
        self._unflushed: dict[str, list[str]] = {}  # by job: units finished, not yet flushed
        self._flushed_at: dict[str, float] = {}
        self._commit_lock = threading.Lock()  # one flush-and-record at a time
        # Readers refuse links inside a dataset that lead out of these (marsbench.datasets.confine).
        self._roots = tuple(dataset_roots)
        self._embedder = embedder
        self._dir = jobs_dir
        self._dir.mkdir(parents=True, exist_ok=True)
        self._batch_size = batch_size
        self._in_flight = in_flight
        self._retries = retries
        self._retry_backoff_s = retry_backoff_s
        # Where the store and the job files live (the data folder); 0 MB: no check.
        self._min_free_disk_mb = min_free_disk_mb
        self._disk_path = disk_path or jobs_dir
        # Snapshot files are written and read only here: an import never opens a path a client names.
        self._snapshots = snapshots_dir or jobs_dir.parent / "snapshots"
        self._jobs: dict[str, JobStatus] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._cancel = threading.Event()  # shutdown
        # Per job run: set by `cancel` (and by shutdown); the job stops at its next batch boundary.
        self._stops: dict[str, threading.Event] = {}
        # Collections being exported or imported now: no job, delete or other snapshot touches them.
        self._busy: set[str] = set()
        self._closed = False  # after shutdown: job files are no longer written (see shutdown)
        self._lock = threading.Lock()
        self._load()

    # -- queries ----------------------------------------------------------------------------

    def get(self, job_id: str) -> JobStatus:
        with self._lock:
            return self.get_locked(job_id)

    def list(self, collection: str | None = None) -> list[JobStatus]:
        with self._lock:
            jobs = [job for job in self._jobs.values() if collection in (None, job.collection)]
        return sorted(jobs, key=lambda job: job.created_at)

    def collections(self) -> builtins.list[CollectionOut]:
        by_collection: dict[str, builtins.list[JobStatus]] = {}
        for listed in self.list():
            by_collection.setdefault(listed.collection, []).append(listed)
        out = []
        for info in self._store.list_collections():
            # By state and time, not creation order: an older failure must not hide a later success.
            job = current_job(by_collection.get(info.name, []))
            out.append(
                CollectionOut(
                    name=info.name,
                    vectors=info.vectors,
                    points=info.points,
                    task=job.task if job else None,
                    model=job.model if job else None,
                    dataset_dir=job.dataset_dir if job else None,
                    # Complete only if it still holds what its job wrote (not damaged since).
                    complete=(
                        job.state is JobState.SUCCEEDED and info.damaged is None and info.points == job.done
                    )
                    if job
                    else None,
                )
            )
        return out

    # -- commands ---------------------------------------------------------------------------

    def submit(self, request: JobCreate) -> JobStatus:
        task = INDEXABLE[request.task.value]
        source = _open_source(task, Path(request.dataset_dir), request.dataset_options(), self._roots)
        try:
            collection = task.collection_name(request.model, source)
        except ValueError as exc:  # e.g. an empty model reference (found by tests/fuzz)
            raise InvalidJob(str(exc)) from exc
        with self._lock:
            for job in self._jobs.values():
                if job.collection == collection and job.state in _ACTIVE:
                    return job
            self._refuse_if_busy(collection)
            now = datetime.now(UTC)
            job = JobStatus(
                id=uuid.uuid4().hex[:12],
                task=request.task,
                model=request.model,
                dataset_dir=str(Path(request.dataset_dir).resolve()),
                dataset_options=request.dataset_options(),
                collection=collection,
                state=JobState.QUEUED,
                total=None,  # counted on the job's thread: 1.4M tiles take a minute of header reads
                done=0,
                skipped=0,
                created_at=now,
                updated_at=now,
            )
            self._jobs[job.id] = job
            self._stops[job.id] = threading.Event()
        self._save(job)
        self._start(job.id, request.batch_size)
        return job

    def resume(self, job_id: str) -> JobStatus:
        """Continue a failed or cancelled job where it stopped: finished shards and written points are
        kept."""
        with self._lock:
            job = self.get_locked(job_id)
            if job.state not in (JobState.FAILED, JobState.CANCELLED):
                hint = "it is already complete" if job.state is JobState.SUCCEEDED else "it is still running"
                raise JobConflict(
                    f"job {job_id} is {job.state.value}: only a failed or cancelled job resumes ({hint})"
                )
            for other in self._jobs.values():
                if other.collection == job.collection and other.state in _ACTIVE:
                    raise JobConflict(
                        f"job {other.id} is writing collection {job.collection!r} now; follow that one"
                    )
            self._refuse_if_busy(job.collection)
            job = job.model_copy(
                update={"state": JobState.QUEUED, "error": None, "updated_at": datetime.now(UTC)}
            )
            self._jobs[job_id] = job
            self._stops[job_id] = threading.Event()
        self._save(job)
        log.info("resuming %s job %s on request", job.state.value, job_id)
        self._start(job_id, None)
        return job

    def cancel(self, job_id: str) -> JobStatus:
        """Stop a queued or running job at its next batch boundary (409 if it has finished). What it
        wrote stays, and `resume` continues it. Returns the job as it stands: a running job turns
        `cancelled` once its batches in flight are written (`GET /v1/jobs/{id}` shows it)."""
        with self._lock:
            job = self.get_locked(job_id)
            if job.state not in _ACTIVE:
                raise JobConflict(f"job {job_id} is {job.state.value}: only a queued or running job cancels")
            stop = self._stops.get(job_id)
            if stop is not None:
                stop.set()  # its thread stops at the next batch boundary and records the state
                return job
            # Never started in this process (queued at a restart without resume): nothing runs it.
            job = job.model_copy(
                update={"state": JobState.CANCELLED, "error": _cancelled(job_id), "eta_s": None,
                        "updated_at": datetime.now(UTC)}
            )  # fmt: skip
            self._jobs[job_id] = job
        self._save(job)
        log.info("cancelled queued job %s on request", job_id)
        return job

    def delete_collection(self, name: str) -> CollectionDeleted:
        """Drop a collection (its points, and for the embedded store its sealing manifest); 409 while a
        job writes it. Its jobs stay listed; a failed or cancelled one resumes from the start."""
        stale = []
        with self._lock:  # held through the delete: no job for it can start meanwhile
            self._refuse_if_written(name, "deleted")
            if not self._store.delete_collection(name):
                raise NotFound(f"no collection {name!r}; GET /v1/collections lists them")
            now = datetime.now(UTC)
            for job in self._jobs.values():
                resumable = job.state in (JobState.FAILED, JobState.CANCELLED)
                if job.collection == name and resumable and (job.completed_units or job.done):
                    # Its finished shards are gone: a resume must read them again. (A succeeded job
                    # keeps its count: a snapshot of what it wrote, imported later, is complete again.)
                    stale.append(job.model_copy(update={"completed_units": [], "done": 0, "updated_at": now}))
            for job in stale:
                self._jobs[job.id] = job
        for job in stale:
            self._save(job)
        log.warning("deleted collection %s on request", name)
        return CollectionDeleted(name=name)

    def export_snapshot(self, name: str) -> SnapshotOut:
        """Write a snapshot of the collection into the snapshots folder (409 while a job writes it)."""
        with self._busy_with(name, "exported"):
            try:
                self._store.collection_info(name)
            except CollectionNotFound:
                raise NotFound(f"no collection {name!r}; GET /v1/collections lists them") from None
            self._snapshots.mkdir(parents=True, exist_ok=True)
            check_free_space(self._disk_path, self._min_free_disk_mb, what="a snapshot")
            now = datetime.now(UTC)
            dest = self._snapshots / f"{name}@{now:%Y%m%dT%H%M%S%fZ}{SNAPSHOT_SUFFIX}"
            written = self._store.export_snapshot(name, dest)
        log.info("exported collection %s (%d points) to %s", name, written.points, dest)
        return SnapshotOut(
            name=dest.name,
            path=str(dest),
            size=dest.stat().st_size,
            sha256=file_sha256(dest),
            collection=name,
            points=written.points,
            backend=_backend(self._store),
            created_at=now,
        )

    def import_snapshot(self, request: SnapshotImport) -> CollectionOut:
        """Create a collection from a snapshot in the snapshots folder (never another path); 404 for an
        unknown snapshot, 409 if the collection exists or a job writes it, 422 for a bad file."""
        path = self._snapshot_path(request.snapshot)
        name = request.collection or request.snapshot.removesuffix(SNAPSHOT_SUFFIX).rsplit("@", 1)[0]
        with self._busy_with(name, "imported"):
            try:
                info = self._store.import_snapshot(path, name)
            except CollectionExists as exc:
                raise CollectionBusy(str(exc)) from exc
            except (SnapshotInvalid, ValueError) as exc:
                raise InvalidSnapshot(str(exc)) from exc
        log.info("imported collection %s (%d points) from %s", name, info.points, path)
        listed = {c.name: c for c in self.collections()}
        return listed.get(name) or CollectionOut(name=name, vectors=info.vectors, points=info.points)

    def _snapshot_path(self, snapshot: str) -> Path:
        folder = self._snapshots.resolve()
        path = (folder / snapshot).resolve()
        # The schema allows no separators; resolving also refuses a link that leads elsewhere.
        if path.parent != folder or not path.is_file():
            raise NotFound(f"no snapshot {snapshot!r} in the indexer's snapshots folder")
        return path

    @contextlib.contextmanager
    def _busy_with(self, collection: str, what: str) -> Iterator[None]:
        """Hold the collection for a long store call (a snapshot) without holding `_lock` meanwhile."""
        with self._lock:
            self._refuse_if_written(collection, what)
            self._busy.add(collection)
        try:
            yield
        finally:
            with self._lock:
                self._busy.discard(collection)

    def _refuse_if_busy(self, collection: str) -> None:
        """Caller holds `_lock`."""
        if collection in self._busy:
            raise CollectionBusy(
                f"collection {collection!r} is being exported or imported now; try again soon"
            )

    def _refuse_if_written(self, collection: str, what: str) -> None:
        """Caller holds `_lock`."""
        self._refuse_if_busy(collection)
        for job in self._jobs.values():
            if job.collection == collection and job.state in _ACTIVE:
                raise CollectionBusy(
                    f"job {job.id} is writing collection {collection!r} now, so it cannot be {what}; "
                    f"cancel it first (POST /v1/jobs/{job.id}/cancel) or wait for it"
                )

    def get_locked(self, job_id: str) -> JobStatus:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise JobNotFound(job_id) from None

    def resume_unfinished(self) -> builtins.list[str]:
        resumed = [job.id for job in self.list() if job.state in _ACTIVE]
        with self._lock:
            for job_id in resumed:
                self._stops[job_id] = threading.Event()
        for job_id in resumed:
            log.info("resuming job %s", job_id)
            self._start(job_id, None)
        return resumed

    def shutdown(self, timeout_s: float = SHUTDOWN_S) -> None:
        """Stop running jobs within `timeout_s`; their state stays resumable.

        A job stops by itself at its next batch boundary, but one encoder call can take longer than
        a service may wait on SIGTERM (orchestrators kill after ~30 s). So after `timeout_s` a job
        still running is written as interrupted (queued: it resumes at the next start, skipping the
        points already stored) and its thread is abandoned: a daemon, it dies with the process, and
        nothing it writes later reaches the job files.
        """
        self._cancel.set()
        with self._lock:
            for stop in self._stops.values():
                stop.set()
        deadline = time.monotonic() + timeout_s
        for running in list(self._threads.values()):
            running.join(max(deadline - time.monotonic(), 0.0))
        with self._lock:
            self._closed = True
            stuck = [job for job in self._jobs.values() if job.state in _ACTIVE]
            for job in stuck:
                self._jobs[job.id] = job.model_copy(
                    update={"state": JobState.QUEUED, "error": INTERRUPTED, "eta_s": None,
                            "updated_at": datetime.now(UTC)}
                )  # fmt: skip
            interrupted = [self._jobs[job.id] for job in stuck]
        for job in interrupted:
            thread = self._threads.get(job.id)
            what = (
                "still running" if thread is not None and thread.is_alive() else "stopped at a batch boundary"
            )
            log.warning("job %s %s at shutdown: left interrupted, resumes at next start", job.id, what)
            self._save(job, force=True)

    def wait(self, job_id: str, timeout_s: float | None = None) -> JobStatus:
        thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout_s)
        return self.get(job_id)

    # -- running ----------------------------------------------------------------------------

    def _start(self, job_id: str, batch_size: int | None) -> None:
        # In the submitting request's context: its request id follows the job's logs and encoder calls.
        with self._lock:
            self._stops.setdefault(job_id, threading.Event())
        context = contextvars.copy_context()
        thread = threading.Thread(
            target=context.run,
            args=(self._run, job_id, batch_size or self._batch_size),
            name=f"job-{job_id}",
            daemon=True,
        )
        self._threads[job_id] = thread
        thread.start()

    def _run(self, job_id: str, batch_size: int) -> None:
        stop = self._stops[job_id]
        job = self.get(job_id)
        # Resumed jobs keep what earlier runs skipped; a re-read item is not counted twice.
        skips = SkipLog()
        for item in job.skipped_items:
            skips.add(item.key, item.reason)
        for retry in range(self._retries + 1):
            if stop.is_set():
                break  # cancelled (or shut down) before this attempt started
            self._update(job_id, state=JobState.RUNNING, attempts=self.get(job_id).attempts + 1)
            try:
                done = self._attempt(job_id, batch_size, skips, stop)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if stop.is_set():
                    break  # an error while stopping (a call cut short): interrupted or cancelled, not failed
                if not is_transient(exc) or retry == self._retries or self._cancel.is_set():
                    log.exception("job %s failed", job_id)
                    if is_transient(exc):
                        reason += f" (after {retry + 1} attempts; POST /v1/jobs/{job_id}/resume continues it)"
                    elif is_disk_full(exc):
                        reason += f" (what was indexed is kept; POST /v1/jobs/{job_id}/resume continues it)"
                    self._finish(job_id, skips, JobState.FAILED, reason)
                    return
                delay = self._retry_backoff_s * 2**retry
                log.warning("job %s: %s; retrying in %.1f s", job_id, reason, delay)
                self._update(job_id, error=f"retrying in {delay:g} s after: {reason}", eta_s=None)
                if stop.wait(delay):
                    break  # shutting down (resumes at the next start) or cancelled
                continue
            if not stop.is_set():
                self._finish(job_id, skips, JobState.SUCCEEDED, None, done=done)
                return
            break
        if self._cancel.is_set():
            self._finish(job_id, skips, JobState.QUEUED, INTERRUPTED)
        else:
            log.info("job %s cancelled on request at a batch boundary", job_id)
            self._finish(job_id, skips, JobState.CANCELLED, _cancelled(job_id))

    def _attempt(self, job_id: str, batch_size: int, skips: SkipLog, stop: threading.Event) -> int:
        """One pass over the dataset from where the job stands; returns the collection's size."""
        self._check_disk()
        job = self.get(job_id)
        task = INDEXABLE[job.task.value]
        source = _open_source(task, Path(job.dataset_dir), job.dataset_options, self._roots)
        self._update(job_id, total=source.count())
        info = self._embedder.model_info(job.model)
        missing = missing_modalities(indexing_needs(job.task), info.modalities)
        if missing:
            raise InvalidJob(refusal(job.model, job.task, missing))
        if info.dimension is None:
            raise InvalidJob(f"the encoder reports no embedding dimension for {job.model!r}")
        job = self._forget_other_vectors(job, info)
        spec = task.collection_spec(job.collection, info.dimension)
        created = self._store.ensure_collection(spec)  # dropped again if this attempt leaves it empty
        try:
            baseline = self._store.count(job.collection)
        except CollectionDamaged as exc:
            # Its points or vectors cannot be trusted, and which ones is unknown: rebuild it whole.
            log.warning("job %s: %s; re-indexing it from the start", job_id, exc)
            self._store.delete_collection(job.collection)
            self._update(job_id, completed_units=[], done=0)
            created = self._store.ensure_collection(spec)
            job, baseline = self.get(job_id), 0
        progress = _Progress(self, job_id, skips, baseline=baseline)
        pipeline = IndexPipeline(
            self._store,
            self._embedder,
            PipelineTarget(job.collection, task.image_vector, job.model, task.text_vector, task.text_field),
            batch_size=batch_size,
            in_flight=self._in_flight,
            skips=skips,
            on_progress=progress.written,
            cancelled=stop,
            units=UnitTracker(lambda unit: self._unit_finished(job_id, unit)),
            before_write=self._check_disk,
        )
        records = source.iter_records(
            skips, skip_units=frozenset(job.completed_units), on_unit_done=pipeline.unit_read
        )
        try:
            try:
                pipeline.run(records)
            finally:
                self._commit_units(job_id, quiet=True)  # units finished before a stop or failure count
            done = self._store.count(job.collection)  # authoritative: what the collection holds
            if not done and not stop.is_set():
                raise DatasetError(nothing_indexed(self.get(job_id).total, skips))
        except Exception:
            if created:
                self._drop_if_empty(job.collection)
            raise
        if not stop.is_set():
            self._store.seal(job.collection)  # damage done to it from now on is detected on open
        return done

    def _drop_if_empty(self, collection: str) -> None:
        """A collection this attempt created and wrote nothing into is not left behind."""
        with contextlib.suppress(Exception):  # never hide the failure being raised
            if self._store.count(collection) == 0:
                self._store.delete_collection(collection)
                log.info("dropped collection %s: created by a job that indexed nothing", collection)

    def _check_disk(self) -> None:
        check_free_space(self._disk_path, self._min_free_disk_mb, what="indexing")

    def _unit_finished(self, job_id: str, unit: str) -> None:
        with self._lock:
            self._unflushed.setdefault(job_id, []).append(unit)
            due = time.monotonic() - self._flushed_at.get(job_id, -math.inf) >= self._unit_flush_interval_s
        if due:
            self._commit_units(job_id)

    def _commit_units(self, job_id: str, *, quiet: bool = False) -> None:
        """Flush the store, then record the units finished before the flush. Durable first, recorded
        second: a crash in between re-reads units whose points are kept (and skipped by id), never
        skips one whose points were lost; a crash before the flush loses only points of units not yet
        recorded, which the restart reads again. `quiet`: a failing flush records nothing and raises
        nothing (the caller is already failing or stopping)."""
        with self._commit_lock:
            with self._lock:
                units = self._unflushed.pop(job_id, [])
            if not units:
                return
            # Every point of these units was upserted before they were reported finished.
            try:
                self._store.flush(self.get(job_id).collection)
            except Exception:
                if quiet:
                    log.warning("job %s: flush failed; %d finished units stay unrecorded", job_id, len(units))
                    return
                raise
            with self._lock:
                self._flushed_at[job_id] = time.monotonic()
                job = self._jobs[job_id]
                job = job.model_copy(update={"completed_units": [*job.completed_units, *units]})
                self._jobs[job_id] = job
            self._save(job)  # at once: a restart must not re-read a finished unit

    def _forget_other_vectors(self, job: JobStatus, info: ModelInfo) -> JobStatus:
        """A collection is named after the model reference; if what embeds behind that reference
        changed (a checkpoint rewritten in place, another image backend or precision), its vectors
        are stale: drop them and start over. Loaded-model facts the encoder does not report yet
        (None) never count as a change."""
        writers = [j for j in self.list() if j.collection == job.collection and j.weights]
        previous = max(writers, key=lambda j: j.updated_at, default=None)
        changed = _changed_facts(previous, info) if previous is not None else []
        if previous is not None and changed:
            what = " and ".join(changed)
            log.warning("%s of %s changed since job %s: re-indexing %s", what, job.model, previous.id,
                        job.collection)  # fmt: skip
            self._store.delete_collection(job.collection)
            self._update(job.id, completed_units=[], error=None)
            log.info("re-indexed from scratch: the %s changed since job %s", what, previous.id)
        self._update(job.id, weights=info.weights, preprocessing=info.preprocessing, precision=info.precision)
        return self.get(job.id)

    def _finish(
        self, job_id: str, skips: SkipLog, state: JobState, error: str | None, *, done: int | None = None
    ) -> None:
        items = [SkippedItemOut(key=s.key, reason=s.reason) for s in skips.items]
        changes: JobChanges = {
            "state": state,
            "error": error,
            "skipped": skips.count,
            "skipped_items": items,
            "eta_s": None,
        }
        if done is not None:
            changes["done"] = done
        self._update(job_id, **changes)

    def _update(self, job_id: str, *, save: bool = True, **changes: Unpack[JobChanges]) -> None:
        with self._lock:
            job = self._jobs[job_id].model_copy(update={**changes, "updated_at": datetime.now(UTC)})
            self._jobs[job_id] = job
        if save:
            self._save(job)

    # -- persistence ------------------------------------------------------------------------

    def _save(self, job: JobStatus, *, force: bool = False) -> None:
        if self._closed and not force:
            return  # an abandoned job thread after shutdown: the interrupted state stays
        try:
            write_text_atomic(self._dir / f"{job.id}.json", job.model_dump_json(indent=2))
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            # The previous file stays whole (atomic write) and the state in memory is right; failing
            # here would leave the job's thread dead and the job `running` for ever.
            log.error("job %s: state not saved: %s", job.id, exc)

    def _load(self) -> None:
        for path in sorted(self._dir.glob("*.json")):
            try:
                job = JobStatus.model_validate_json(path.read_text())
            except ValueError as exc:
                log.warning("ignoring unreadable job file %s: %s", path, exc)
                continue
            self._jobs[job.id] = job


def _changed_facts(previous: JobStatus, info: ModelInfo) -> list[str]:
    """What embeds behind the model reference that differs from what `previous` recorded; a fact
    either side does not know (None) never counts as a change."""
    now = {"weights": info.weights, "preprocessing": info.preprocessing, "precision": info.precision}
    then = {
        "weights": previous.weights,
        "preprocessing": previous.preprocessing,
        "precision": previous.precision,
    }
    return [key for key, value in now.items() if value and then[key] and then[key] != value]


def _cancelled(job_id: str) -> str:
    return f"cancelled on request; what was indexed is kept (POST /v1/jobs/{job_id}/resume continues it)"


def _backend(store: VectorStore) -> str:
    return "embedded" if isinstance(store, EmbeddedStore) else "server"


def nothing_indexed(total: int | None, skips: SkipLog) -> str:
    """Why a job that read its whole dataset indexed nothing: the most common skip reason."""
    of = f" of {total}" if total is not None else ""
    if not skips.count:
        return f"nothing indexed (0{of} items): the dataset yielded no items"
    reasons = Counter(item.reason for item in skips.items)
    reason, n = reasons.most_common(1)[0]
    listed = (
        f"{n} of the first {len(skips.items)}" if skips.count > len(skips.items) else f"{n} of {skips.count}"
    )
    return (
        f"nothing indexed (0{of} items): all {skips.count} items read were skipped; the most common "
        f"reason ({listed}): {reason}"
    )


def _open_source(
    task: IndexedTask, dataset_dir: Path, options: dict[str, str], roots: Sequence[Path] = ()
) -> ImageSource:
    try:
        exists = dataset_dir.is_dir()
    except OSError as exc:  # a name too long or otherwise unusable (found by tests/fuzz): the caller's fault
        raise InvalidJob(f"dataset folder {str(dataset_dir)[:200]!r}: {exc.strerror}") from None
    if not exists:
        raise InvalidJob(
            f"dataset folder {dataset_dir} does not exist (give the task's published 'dataset/' folder)"
        )
    try:
        # Opening checks the layout; counting (which reads every shard's headers) waits for the job.
        source = task.open(dataset_dir, options, roots=roots)
    except (DatasetError, ValueError) as exc:
        raise InvalidJob(str(exc)) from exc
    return source


class _Progress:
    """Turns written-item counts into the job's done/rate/ETA; state is saved at most every second."""

    def __init__(self, jobs: JobManager, job_id: str, skips: SkipLog, *, baseline: int) -> None:
        self._jobs = jobs
        self._job_id = job_id
        self._skips = skips
        self._baseline = baseline
        self._total = jobs.get(job_id).total
        self._written = 0
        self._started = time.monotonic()
        self._saved_at = 0.0
        self._lock = threading.Lock()

    def written(self, items: int) -> None:
        with self._lock:
            self._written += items
            done = self._baseline + self._written
            remaining = None if self._total is None else max(self._total - done - self._skips.count, 0)
            rate, eta = rate_and_eta(self._written, time.monotonic() - self._started, remaining)
            save = time.monotonic() - self._saved_at >= _SAVE_EVERY_S
            if save:
                self._saved_at = time.monotonic()
        self._jobs._update(
            self._job_id, save=save, done=done, skipped=self._skips.count, rate=rate, eta_s=eta
        )

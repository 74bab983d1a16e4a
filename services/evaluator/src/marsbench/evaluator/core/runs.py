"""Runs: evaluate a (task, model, data) collection and keep the record as JSON.

Each task's evaluation (marsbench.evaluator.core.tasks, one module per task) returns the
task-specific sections of the record through one interface; `RunService.create` dispatches on the
request's task, adds what every record shares (its identity, the indexing state, the model's
prompts, its provenance) and writes it.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from marsbench.datasets.errors import DatasetError
from marsbench.evaluator.core.errors import IncompleteIndex, InvalidRun, NotIndexed, RunNotFound
from marsbench.evaluator.core.ports import IndexingJobs, QueryEncoder, UpstreamError
from marsbench.evaluator.core.provenance import build_provenance, indexing_seconds, weights_notes
from marsbench.evaluator.core.tasks import PARITY, TASKS, RunContext, TaskEvaluation, TaskResult
from marsbench.evaluator.core.timing import PhaseTimer
from marsbench.evaluator.core.warm_index import WarmIndexCache
from marsbench.files import DiskFull, is_disk_full, write_text_atomic
from marsbench.job_order import current_job
from marsbench.schemas.jobs import JobState, JobStatus, TaskName
from marsbench.schemas.models import ModelInfo
from marsbench.schemas.provenance import Timings
from marsbench.schemas.runs import RunCreate, RunRecord
from marsbench.store import CollectionDamaged, CollectionNotFound, VectorStore
from marsbench.store.naming import collection_name
from marsbench.tasks import INDEXABLE
from marsbench.tasks.modalities import missing_modalities, query_needs, refusal

_SAFE_ID = re.compile(r"^[A-Za-z0-9T_-]+$")
_SAFE_ARTIFACT = re.compile(r"^[A-Za-z0-9._-]+$")


class RunService:
    def __init__(
        self,
        store: VectorStore,
        encoder: QueryEncoder,
        runs_dir: Path,
        *,
        warm_indexes: WarmIndexCache | None = None,
        indexing: IndexingJobs | None = None,
        dataset_roots: Sequence[Path] = (),
    ) -> None:
        self._store = store
        # Readers refuse links inside a dataset that lead out of these (marsbench.datasets.confine).
        self._roots = tuple(dataset_roots)
        self._indexing = indexing
        self._encoder = encoder
        self._warm = warm_indexes
        self._dir = runs_dir
        self._dir.mkdir(parents=True, exist_ok=True)
        self._tasks: Mapping[TaskName, TaskEvaluation[TaskResult]] = TASKS

    def collection_for(self, request: RunCreate) -> str:
        return self._open_dataset(request)[0]

    def _open_dataset(self, request: RunCreate) -> tuple[str, str]:
        """(collection name, the reader's fingerprint of the data), the fingerprint taken once."""
        task = INDEXABLE[request.task.value]
        dataset_dir = Path(request.dataset_dir)
        if not dataset_dir.is_dir():
            raise InvalidRun(f"dataset folder {dataset_dir} does not exist")
        try:
            fingerprint = task.open(dataset_dir, request.dataset_options(), roots=self._roots).fingerprint()
            # As IndexedTask.collection_name names it, without fingerprinting the data again.
            return collection_name(task.name, request.model, fingerprint), fingerprint
        except (DatasetError, ValueError) as exc:
            raise InvalidRun(str(exc)) from exc

    def create(self, request: RunCreate) -> RunRecord:
        timer = PhaseTimer()
        with timer.phase("model_card"):
            card = self._encoder.model_info(request.model, load=False)
        self._check_modalities(request, card)
        with timer.phase("open_dataset"):
            collection, fingerprint = self._open_dataset(request)
        with timer.phase("check_indexing"):
            indexing, forced = self._indexing_state(collection, force=request.force)
        run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        context = RunContext(
            store=self._store,
            encoder=self._encoder,
            collection=collection,
            run_id=run_id,
            runs_dir=self._dir,
            timer=timer,
            warm=self._warm,
            roots=self._roots,
        )
        started = time.perf_counter()
        try:
            result = self._tasks[request.task].evaluate(context, request)
        except CollectionNotFound:
            raise NotIndexed(
                f"collection {collection!r} for model {request.model!r} and {request.dataset_dir} does not "
                "exist; index it first (POST /v1/jobs on the indexer, or `marsbench run`)"
            ) from None
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            # A map or top-lists file half written: remove what this run wrote, answer 507.
            self._discard(run_id)
            raise DiskFull(f"run {run_id} not recorded: {exc}; free some space and run it again") from exc
        # The prompts behind the vectors: the model's defaults (also those of the indexed images),
        # and the text-query instruction when the request overrides it.
        instruction = {"query_instruction": request.instruction} if request.instruction else {}
        settings = result.settings.model_copy(update={"model_prompts": card.prompts | instruction})
        notes = [*forced_notes(indexing, forced), *result.notes]
        duration = time.perf_counter() - started
        with timer.phase("model_card"):
            card = self._final_card(request, card)
        with timer.phase("provenance"):
            provenance = build_provenance(
                request, card, fingerprint=fingerprint, indexing=indexing, query_images=result.query_images
            )
        notes += weights_notes(request.task, provenance.model)
        # Last, so that every phase is in and the total covers them all.
        provenance.timings = Timings(
            phases=dict(timer.seconds), total_s=timer.total(), indexing_s=indexing_seconds(indexing)
        )
        record = RunRecord(
            id=run_id,
            indexing=indexing,
            forced=forced,
            task=request.task,
            model=request.model,
            dataset_dir=str(Path(request.dataset_dir).resolve()),
            collection=collection,
            caption_key=result.caption_key,
            landform=result.landform,
            query_mode=result.query_mode,
            variant=PARITY,
            metrics=result.metrics,
            variants=result.variants,
            artifacts=result.artifacts,
            per_class=result.per_class,
            curves=result.curves,
            chance=result.chance,
            settings=settings,
            counts=result.counts,
            notes=notes,
            created_at=datetime.now(UTC),
            duration_s=duration,
            provenance=provenance,
        )
        try:
            write_text_atomic(self._dir / f"{record.id}.json", record.model_dump_json(indent=2))
        except DiskFull as exc:  # the record's temporary file is already gone; its artifacts go too
            self._discard(run_id)
            raise DiskFull(f"run {run_id} not recorded: {exc}; free some space and run it again") from exc
        return record

    def _discard(self, run_id: str) -> None:
        for path in self._dir.glob(f"{run_id}.*"):
            path.unlink(missing_ok=True)

    def _damage(self, collection: str, job: JobStatus) -> str | None:
        """Why the collection no longer holds what its succeeded job wrote, or None if it does.

        A store whose files were damaged can load with fewer points (or none) and no error, and every
        metric would then silently cover part of the data."""
        try:
            points = self._store.count(collection)
        except CollectionNotFound:
            return None  # deleted since: refused as not indexed
        except CollectionDamaged as exc:
            # The store will not open it, so forcing cannot help: re-indexing is the only way on.
            raise IncompleteIndex(str(exc), {**_job_summary(job), "damaged": exc.reason}) from exc
        if points == job.done:
            return None
        return f"it holds {points} points, but its indexing job {job.id} wrote {job.done}"

    def _indexing_state(self, collection: str, *, force: bool) -> tuple[dict[str, object], bool]:
        """The collection's indexing job as the record keeps it, and whether this run is forced.

        A collection whose latest job has not succeeded (still running, failed, interrupted) is
        refused unless `force`: its numbers would silently cover part of the data."""
        if self._indexing is None:
            return {"state": "unknown", "reason": "the evaluator has no MARSBENCH_INDEXER_URL"}, False
        try:
            jobs = self._indexing.jobs(collection)
        except UpstreamError as exc:
            if not force:
                raise IncompleteIndex(
                    f"cannot tell whether collection {collection!r} is completely indexed: the indexer "
                    f"did not answer ({exc}); try again, or pass force=true to evaluate what it holds",
                    {"collection": collection},
                ) from exc
            return {"state": "unknown", "reason": f"indexer unreachable: {exc}"}, True
        if not jobs:
            # Written by another indexer or tool: nothing says it is incomplete.
            return {"state": "no job", "reason": "no indexing job of this indexer wrote it"}, False
        # By state and time, not listing order: an older failure must not hide a later success.
        job = current_job(jobs) or jobs[-1]
        summary = _job_summary(job)
        if job.state is JobState.SUCCEEDED:
            damage = self._damage(collection, job)
            if damage is None:
                return summary, False
            summary |= {"points": self._store.count(collection), "damaged": damage}
            if force:
                return summary, True
            raise IncompleteIndex(
                f"collection {collection!r} is damaged: {damage}. Index it again (a new job for it: "
                f"POST /v1/jobs on the indexer or `marsbench run`, which rebuilds it), then evaluate; or "
                "pass force=true to evaluate what it holds now (the record will say so)",
                summary,
            )
        if force:
            return summary, True
        progress = f"{job.done} of {job.total} items" if job.total is not None else f"{job.done} items"
        percent = f" ({100 * job.done / job.total:.1f}%)" if job.total else ""
        why = f": {job.error}" if job.error else ""
        advice = (
            f"resume it (POST /v1/jobs/{job.id}/resume on the indexer, or `marsbench jobs resume {job.id}`)"
            if job.state in (JobState.FAILED, JobState.CANCELLED)
            else "wait for it to finish"
        )
        raise IncompleteIndex(
            f"collection {collection!r} is incomplete: indexing job {job.id} is {job.state.value} at "
            f"{progress}{percent}{why}. {advice.capitalize()}, then evaluate; or pass force=true to "
            "evaluate what it holds now (the record will say so)",
            summary,
        )

    def _check_modalities(self, request: RunCreate, card: ModelInfo) -> None:
        """Refuse a run whose queries the model cannot embed (text for an image-only model)."""
        missing = missing_modalities(query_needs(request.task, request.query_mode), card.modalities)
        if missing:
            raise InvalidRun(refusal(request.model, request.task, missing, request.query_mode))

    # -- provenance -------------------------------------------------------------------------

    def _final_card(self, request: RunCreate, card: ModelInfo) -> ModelInfo:
        """The model card after the run: once the model is loaded it names the weights, device and
        precision. A run that embedded queries has loaded it, so asking to load costs nothing; a
        paired run embedded nothing, and loading a model only to describe it is not worth it."""
        try:
            final = self._encoder.model_info(request.model, load=False)
            if final.weights is None and request.task is not TaskName.PAIRED:
                final = self._encoder.model_info(request.model, load=True)
        except UpstreamError:
            return card  # the encoder went away after the run: the record keeps what it knew
        return final

    # -- records ----------------------------------------------------------------------------

    def get(self, run_id: str) -> RunRecord:
        path = self._dir / f"{run_id}.json"
        if not _SAFE_ID.match(run_id) or not path.is_file():
            raise RunNotFound(run_id)
        return RunRecord.model_validate_json(path.read_text())

    def artifact(self, run_id: str, name: str) -> Path:
        """A file named by a record's `artifacts`, e.g. its map."""
        record = self.get(run_id)
        if name not in record.artifacts.values() or not _SAFE_ARTIFACT.match(name):
            raise RunNotFound(f"{run_id}/{name}")
        return self._dir / name

    def list(self) -> list[RunRecord]:
        # Records only: artifacts beside them are JSON too (`<id>.top10.json`), but their stems are no ids.
        paths = [p for p in sorted(self._dir.glob("*.json")) if _SAFE_ID.match(p.stem)]
        return [RunRecord.model_validate_json(p.read_text()) for p in paths]


def forced_notes(indexing: Mapping[str, object], forced: bool) -> list[str]:
    """The note that leads a forced run's record: what it evaluated instead of a complete index."""
    if forced and indexing.get("damaged"):
        return [
            f"forced: evaluated a damaged collection ({indexing['damaged']}): not comparable with "
            "complete runs"
        ]
    if forced:
        return [
            f"forced: evaluated while the collection's indexing was {indexing.get('state')} "
            f"({indexing.get('done')} of {indexing.get('total')} items): not comparable with "
            "complete runs"
        ]
    return []


def _job_summary(job: JobStatus) -> dict[str, object]:
    return {
        "job": job.id,
        "state": job.state.value,
        "done": job.done,
        "total": job.total,
        "skipped": job.skipped,
        "attempts": job.attempts,
        "error": job.error,
        "weights": job.weights,
        "preprocessing": job.preprocessing,
        "precision": job.precision,
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
    }

"""Runs: evaluate a (task, model, data) collection and keep the record as JSON.

Each task has one function that evaluates and returns the task-specific fields of the record;
`RunService.create` adds what every record shares (its provenance among them) and writes it.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from marsbench.client import MarsbenchError
from marsbench.datasets.errors import DatasetError
from marsbench.evaluator.core.curves import geo_curves, paired_curves
from marsbench.evaluator.core.errors import IncompleteIndex, InvalidRun, NotIndexed, RunNotFound
from marsbench.evaluator.core.geo import evaluate_geo
from marsbench.evaluator.core.landform import TIE_RULE, evaluate_landform
from marsbench.evaluator.core.maps import draw_geo_map
from marsbench.evaluator.core.paired import TIE_RULE as PAIRED_TIE_RULE
from marsbench.evaluator.core.paired import TOP_K as PAIRED_TOP_K
from marsbench.evaluator.core.paired import evaluate_paired
from marsbench.evaluator.core.ports import IndexingJobs, QueryEncoder
from marsbench.evaluator.core.provenance import build_provenance, indexing_seconds, weights_notes
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
from marsbench.tasks.landform import PROMPT_TEMPLATES
from marsbench.tasks.modalities import missing_modalities, query_needs, refusal
from marsbench.tasks.paired import DEFAULT_CAPTION_KEY

PARITY = "parity"
_SAFE_ID = re.compile(r"^[A-Za-z0-9T_-]+$")
_SAFE_ARTIFACT = re.compile(r"^[A-Za-z0-9._-]+$")

Fields = dict[str, Any]


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
        self._evaluators: dict[TaskName, Callable[[RunCreate, str, str, PhaseTimer], Fields]] = {
            TaskName.LANDFORM: self._landform,
            TaskName.GEOLOCALIZATION: self._geo,
            TaskName.PAIRED: self._paired,
        }

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
        started = time.perf_counter()
        try:
            fields = self._evaluators[request.task](request, collection, run_id, timer)
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
        fields["settings"] = fields.get("settings", {}) | {
            "model_prompts": card.prompts
            | ({"query_instruction": request.instruction} if request.instruction else {})
        }
        if forced and indexing.get("damaged"):
            fields["notes"] = [
                f"forced: evaluated a damaged collection ({indexing['damaged']}): not comparable with "
                "complete runs",
                *fields.get("notes", []),
            ]
        elif forced:
            fields["notes"] = [
                f"forced: evaluated while the collection's indexing was {indexing.get('state')} "
                f"({indexing.get('done')} of {indexing.get('total')} items): not comparable with "
                "complete runs",
                *fields.get("notes", []),
            ]
        duration = time.perf_counter() - started
        with timer.phase("model_card"):
            card = self._final_card(request, card)
        with timer.phase("provenance"):
            provenance = build_provenance(
                request,
                card,
                fingerprint=fingerprint,
                indexing=indexing,
                query_images=fields.get("settings", {}).get("query_images", []),
            )
        fields["notes"] = fields.get("notes", []) + weights_notes(request.task, provenance.model)
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
            variant=PARITY,
            created_at=datetime.now(UTC),
            duration_s=duration,
            provenance=provenance,
            **fields,
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
        except MarsbenchError as exc:
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
        except MarsbenchError:
            return card  # the encoder went away after the run: the record keeps what it knew
        return final

    # -- tasks ------------------------------------------------------------------------------

    def _landform(self, request: RunCreate, collection: str, run_id: str, timer: PhaseTimer) -> Fields:
        outcome = evaluate_landform(
            self._store,
            self._encoder,
            collection=collection,
            model=request.model,
            max_k=request.max_k,
            instruction=request.instruction,
            timer=timer,
        )
        if not outcome.classes:
            raise InvalidRun(f"collection {collection!r} holds no labelled images")
        metrics = outcome.metrics.as_dict()
        return {
            "metrics": metrics,
            "variants": {PARITY: metrics},
            "per_class": outcome.metrics.per_class_table(),
            "chance": outcome.chance,
            "settings": {"templates": list(PROMPT_TEMPLATES), "max_k": request.max_k, "tie_rule": TIE_RULE},
            "counts": {"images": outcome.n_images, "classes": len(outcome.classes)},
        }

    def _paired(self, request: RunCreate, collection: str, run_id: str, timer: PhaseTimer) -> Fields:
        try:
            outcome = evaluate_paired(
                self._store, collection=collection, with_top_lists=request.top_lists, timer=timer
            )
        except ValueError as exc:
            raise InvalidRun(str(exc)) from exc
        metrics = outcome.metrics.as_dict()
        with timer.phase("curves"):
            curves = paired_curves(outcome.metrics)
        artifacts = {}
        if outcome.top_lists is not None:
            artifacts["top_lists"] = f"{run_id}.top{PAIRED_TOP_K}.json"
            write_text_atomic(self._dir / artifacts["top_lists"], json.dumps(outcome.top_lists))
        variants = {PARITY: metrics} | {name: m.as_dict() for name, m in outcome.tie_bounds.items()}
        tied = outcome.tied_partners()
        notes = []
        if tied:
            notes.append(
                f"{tied} query partner(s) tie exactly with other items (e.g. duplicate captions); their "
                "ranks depend on tie order, which the reference leaves to its loader's row order and numpy's "
                "sort: compare with the reference within variants ties_optimistic..ties_pessimistic"
            )
        return {
            "caption_key": request.caption_key or DEFAULT_CAPTION_KEY,
            "metrics": metrics,
            "variants": variants,
            "curves": curves,
            "notes": notes,
            "artifacts": artifacts,
            "settings": {
                "tie_rule": PAIRED_TIE_RULE,
                "similarity": "float32 inner product of L2-normalised vectors",
            },
            "counts": {"pairs": len(outcome.keys)},
        }

    def _geo(self, request: RunCreate, collection: str, run_id: str, timer: PhaseTimer) -> Fields:
        outcome = evaluate_geo(
            self._store,
            self._encoder,
            collection=collection,
            dataset_dir=Path(request.dataset_dir),
            request=request,
            warm=self._warm,
            timer=timer,
            roots=self._roots,
        )
        parity = outcome.curves[PARITY]
        with timer.phase("curves"):
            curves = geo_curves(parity)
        map_name = f"{run_id}.map.png"
        title = f"{request.landform} · {request.query_mode} query · {request.model} · best k={parity.best.k}"
        with timer.phase("figures"):
            draw_geo_map(
                self._dir / map_name,
                tiles_lonlat=outcome.ranked_lonlat[: parity.best.k],
                tile_hit=parity.tile_hit,
                gt_lonlat=outcome.gt_lonlat,
                gt_covered=parity.gt_covered,
                title=title,
            )
        variants = {name: curve.as_dict() for name, curve in outcome.curves.items()}
        notes = [f"ground truth row skipped: {row}" for row in outcome.skipped_gt_rows]
        return {
            "landform": request.landform,
            "query_mode": request.query_mode,
            "metrics": variants[PARITY],
            "variants": variants,
            "curves": curves,
            "artifacts": {"map": map_name},
            "settings": {
                "top_k": request.top_k,
                "radius_deg": request.radius_deg,
                "distance": {
                    "parity": "planar (reference map pixels)",
                    "exact": "planar",
                    "exact_great_circle": f"great circle, {request.radius_deg} deg of arc on Mars",
                },
                "mix_ratio": request.mix_ratio,
                "temperature": request.temperature,
                "prompts": outcome.query.prompts,
                "query_images": outcome.query.query_images,
                "order_rule": outcome.order_rule,
            },
            "counts": {
                "retrieved": len(outcome.ranked_lonlat),
                "gt_points": len(outcome.gt_lonlat),
            },
            "notes": notes,
        }

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

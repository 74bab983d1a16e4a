"""Runs: evaluate a (task, model, data) collection and keep the record as JSON."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from marsbench.datasets.errors import DatasetError
from marsbench.evaluator.core.errors import InvalidRun, NotIndexed, RunNotFound
from marsbench.evaluator.core.landform import TIE_RULE, evaluate_landform
from marsbench.evaluator.core.ports import QueryEncoder
from marsbench.files import write_text_atomic
from marsbench.schemas.runs import RunCreate, RunRecord
from marsbench.store import CollectionNotFound, VectorStore
from marsbench.tasks import INDEXABLE
from marsbench.tasks.landform import PROMPT_TEMPLATES

PARITY = "parity"


class RunService:
    def __init__(self, store: VectorStore, encoder: QueryEncoder, runs_dir: Path) -> None:
        self._store = store
        self._encoder = encoder
        self._dir = runs_dir
        self._dir.mkdir(parents=True, exist_ok=True)

    def collection_for(self, request: RunCreate) -> str:
        task = INDEXABLE[request.task.value]
        dataset_dir = Path(request.dataset_dir)
        if not dataset_dir.is_dir():
            raise InvalidRun(f"dataset folder {dataset_dir} does not exist")
        try:
            return task.collection_name(request.model, task.open(dataset_dir))
        except DatasetError as exc:
            raise InvalidRun(str(exc)) from exc

    def create(self, request: RunCreate) -> RunRecord:
        collection = self.collection_for(request)
        started = time.perf_counter()
        try:
            outcome = evaluate_landform(
                self._store, self._encoder, collection=collection, model=request.model, max_k=request.max_k
            )
        except CollectionNotFound:
            raise NotIndexed(
                f"collection {collection!r} for model {request.model!r} and {request.dataset_dir} does not "
                "exist; index it first (POST /v1/jobs on the indexer, or `marsbench run`)"
            ) from None
        if not outcome.classes:
            raise InvalidRun(f"collection {collection!r} holds no labelled images")
        record = RunRecord(
            id=f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}",
            task=request.task,
            model=request.model,
            dataset_dir=str(Path(request.dataset_dir).resolve()),
            collection=collection,
            variant=PARITY,
            metrics=outcome.metrics.as_dict(),
            per_class=outcome.metrics.per_class_table(),
            chance=outcome.chance,
            settings={"templates": list(PROMPT_TEMPLATES), "max_k": request.max_k, "tie_rule": TIE_RULE},
            counts={"images": outcome.n_images, "classes": len(outcome.classes)},
            created_at=datetime.now(UTC),
            duration_s=time.perf_counter() - started,
        )
        write_text_atomic(self._dir / f"{record.id}.json", record.model_dump_json(indent=2))
        return record

    def path_of(self, run_id: str) -> Path:
        return self._dir / f"{run_id}.json"

    def get(self, run_id: str) -> RunRecord:
        path = self.path_of(run_id)
        if "/" in run_id or not path.is_file():
            raise RunNotFound(run_id)
        return RunRecord.model_validate_json(path.read_text())

    def list(self) -> list[RunRecord]:
        return [RunRecord.model_validate_json(p.read_text()) for p in sorted(self._dir.glob("*.json"))]

"""`/v1/runs`: evaluate a collection and read run records."""

from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.responses import FileResponse

from marsbench.evaluator.api.deps import RunsDep
from marsbench.schemas.runs import RunCreate, RunList, RunRecord
from marsbench.security import DatasetRootsDep

router = APIRouter(prefix="/v1/runs", tags=["runs"])


@router.post("", status_code=status.HTTP_201_CREATED)
def create_run(request: RunCreate, runs: RunsDep, roots: DatasetRootsDep) -> RunRecord:
    """Evaluate now (seconds for the landform task) and return the stored record.
    The folder must lie under MARSBENCH_DATASET_ROOTS (403 otherwise)."""
    dataset_dir = str(roots.confine(request.dataset_dir))
    return runs.create(request.model_copy(update={"dataset_dir": dataset_dir}))


@router.get("")
def list_runs(runs: RunsDep) -> RunList:
    return RunList(data=runs.list())


@router.get("/{run_id}")
def get_run(run_id: str, runs: RunsDep) -> RunRecord:
    return runs.get(run_id)


@router.get("/{run_id}/artifacts/{name}", response_class=FileResponse)
def get_artifact(run_id: str, name: str, runs: RunsDep) -> FileResponse:
    """A file the record lists under `artifacts` (e.g. the geo-localization map PNG)."""
    return FileResponse(runs.artifact(run_id, name))

"""`/v1/runs`: evaluate a collection and read run records."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status
from fastapi.responses import FileResponse

from marsbench.evaluator.api.deps import RunsDep
from marsbench.http import GUARDED, WITH_BODY, error_responses
from marsbench.schemas.runs import RunCreate, RunList, RunRecord
from marsbench.security import DatasetRootsDep

router = APIRouter(prefix="/v1/runs", tags=["runs"], responses=error_responses(*GUARDED))

# Run ids are `<UTC time>-<6 hex>` and artifacts `<id>.<kind>`: a name far longer than any of them
# (or holding other characters) is refused here, before it reaches the file system, whose
# "File name too long" would otherwise be a 500.
MAX_NAME_CHARS = 128
RunId = Annotated[str, Path(max_length=MAX_NAME_CHARS, pattern=r"^[A-Za-z0-9_-]+$")]
ArtifactName = Annotated[str, Path(max_length=MAX_NAME_CHARS, pattern=r"^[A-Za-z0-9._-]+$")]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    # 404: not indexed (no such collection); 409: its job has not succeeded; 502: the encoder
    # failed; 503: the store.
    responses=error_responses(*WITH_BODY, 403, 404, 409, 502, 503),
)
def create_run(request: RunCreate, runs: RunsDep, roots: DatasetRootsDep) -> RunRecord:
    """Evaluate now (seconds for the landform task) and return the stored record.
    The folder must lie under MARSBENCH_DATASET_ROOTS (403 otherwise)."""
    dataset_dir = str(roots.confine(request.dataset_dir))
    return runs.create(request.model_copy(update={"dataset_dir": dataset_dir}))


@router.get("")
def list_runs(runs: RunsDep) -> RunList:
    return RunList(data=runs.list())


@router.get("/{run_id}", responses=error_responses(404))
def get_run(run_id: RunId, runs: RunsDep) -> RunRecord:
    return runs.get(run_id)


@router.get(
    "/{run_id}/artifacts/{name}",
    response_class=FileResponse,
    responses={
        200: {"content": {"image/png": {}, "application/json": {}}, "description": "The artifact file."},
        **error_responses(404),
    },
)
def get_artifact(run_id: RunId, name: ArtifactName, runs: RunsDep) -> FileResponse:
    """A file the record lists under `artifacts` (e.g. the geo-localization map PNG)."""
    return FileResponse(runs.artifact(run_id, name))

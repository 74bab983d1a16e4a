"""`/v1/collections`: what the store holds, with the job that wrote each collection; delete one;
export one to a snapshot file in the data folder's `snapshots/` and import one from there."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from marsbench.http import WITH_BODY, error_responses
from marsbench.indexer.api.deps import JobsDep
from marsbench.schemas.jobs import (
    COLLECTION_NAME,
    CollectionDeleted,
    CollectionList,
    CollectionOut,
    SnapshotImport,
    SnapshotOut,
)

router = APIRouter(prefix="/v1/collections", tags=["collections"], responses=error_responses(401, 503))

CollectionName = Annotated[str, Path(pattern=COLLECTION_NAME, description="A collection's name.")]


@router.get("")
def list_collections(jobs: JobsDep) -> CollectionList:
    return CollectionList(data=jobs.collections())


@router.post("/import", status_code=status.HTTP_201_CREATED, responses=error_responses(*WITH_BODY, 404, 409))
def import_collection(request: SnapshotImport, jobs: JobsDep) -> CollectionOut:
    """Create a collection from a snapshot in the indexer's snapshots folder (by name, never a path):
    404 for an unknown snapshot, 409 if the collection exists or a job writes it, 422 for a file this
    store cannot import (a snapshot of the other backend, or damaged)."""
    return jobs.import_snapshot(request)


@router.delete("/{name}", responses=error_responses(404, 409))
def delete_collection(name: CollectionName, jobs: JobsDep) -> CollectionDeleted:
    """Drop the collection and everything it holds; 409 while a job writes it (cancel that first)."""
    return jobs.delete_collection(name)


@router.post("/{name}/snapshot", status_code=status.HTTP_201_CREATED, responses=error_responses(404, 409))
def export_collection(name: CollectionName, jobs: JobsDep) -> SnapshotOut:
    """Write a snapshot of the collection into `<data dir>/snapshots/` (409 while a job writes it)."""
    return jobs.export_snapshot(name)

"""`GET /v1/collections`: what the store holds, with the job that wrote each collection."""

from __future__ import annotations

from fastapi import APIRouter

from marsbench.http import error_responses
from marsbench.indexer.api.deps import JobsDep
from marsbench.schemas.jobs import CollectionList

router = APIRouter(prefix="/v1/collections", tags=["collections"], responses=error_responses(401, 503))


@router.get("")
def list_collections(jobs: JobsDep) -> CollectionList:
    return CollectionList(data=jobs.collections())

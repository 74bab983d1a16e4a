"""`POST /v1/search`: an interactive text or image query against a live collection."""

from __future__ import annotations

from fastapi import APIRouter

from marsbench.evaluator.api.deps import EncoderDep, StoreDep
from marsbench.evaluator.core.search import search
from marsbench.schemas.search import SearchRequest, SearchResponse

router = APIRouter(prefix="/v1/search", tags=["search"])


@router.post("")
def run_search(request: SearchRequest, store: StoreDep, encoder: EncoderDep) -> SearchResponse:
    return search(store, encoder, request)

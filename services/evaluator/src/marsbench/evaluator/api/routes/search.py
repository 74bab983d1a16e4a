"""`POST /v1/search`: an interactive text or image query against a live collection."""

from __future__ import annotations

from fastapi import APIRouter

from marsbench.evaluator.api.deps import EncoderDep, StoreDep
from marsbench.evaluator.core.search import search
from marsbench.http import WITH_BODY, error_responses
from marsbench.schemas.search import SearchRequest, SearchResponse

router = APIRouter(prefix="/v1/search", tags=["search"])


# 404: no such collection; 502: the encoder failed; 503: the store.
@router.post("", responses=error_responses(*WITH_BODY, 404, 502, 503))
def run_search(request: SearchRequest, store: StoreDep, encoder: EncoderDep) -> SearchResponse:
    return search(store, encoder, request)

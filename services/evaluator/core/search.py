"""Interactive search: embed one text or image query and return the top k with payloads."""

from __future__ import annotations

import numpy as np

from marsbench.evaluator.core.errors import InvalidRun, NotIndexed
from marsbench.evaluator.core.ports import QueryEncoder
from marsbench.schemas.datauri import decode_data_uri
from marsbench.schemas.search import SearchHit, SearchRequest, SearchResponse
from marsbench.store import CollectionNotFound, VectorStore

IMAGE_VECTOR = "image"


def search(store: VectorStore, encoder: QueryEncoder, request: SearchRequest) -> SearchResponse:
    try:
        info = store.collection_info(request.collection)
    except CollectionNotFound:
        raise NotIndexed(
            f"collection {request.collection!r} does not exist; GET /v1/collections lists them"
        ) from None
    if IMAGE_VECTOR not in info.vectors:
        raise InvalidRun(f"collection {request.collection!r} has no {IMAGE_VECTOR!r} vectors")
    if request.text is not None:
        query = encoder.embed_texts(request.model, [request.text])
    else:
        try:
            image = decode_data_uri(request.image or "")
        except ValueError as exc:
            raise InvalidRun(f"image: {exc}") from None
        query = encoder.embed_images(request.model, [image])
    hits = store.search_batch(request.collection, np.asarray(query), using=IMAGE_VECTOR, limit=request.k)[0]
    return SearchResponse(
        collection=request.collection,
        hits=[SearchHit(id=hit.id, score=hit.score, payload=hit.payload) for hit in hits],
    )

"""Interactive search: embed one text or image query and return the top k with payloads."""

from __future__ import annotations

import numpy as np

from marsbench.evaluator.core.errors import InvalidRun, NotIndexed
from marsbench.evaluator.core.ports import QueryEncoder
from marsbench.evaluator.metrics.geo import MARS_RADIUS_KM
from marsbench.schemas.datauri import decode_data_uri
from marsbench.schemas.search import Region, SearchHit, SearchRequest, SearchResponse
from marsbench.store import CollectionNotFound, GeoBox, GeoRadius, SearchFilter, VectorStore
from marsbench.tasks.geo import LOCATION_FIELD

IMAGE_VECTOR = "image"


# Qdrant's radius filter takes metres on its own (Earth) sphere, so a radius on Mars is converted
# to the same central angle on Earth.
EARTH_RADIUS_M = 6_371_008.8


def region_filter(region: Region) -> SearchFilter:
    if region.bbox is not None:
        lon_min, lat_min, lon_max, lat_max = region.bbox
        return SearchFilter(geo_box=GeoBox(LOCATION_FIELD, lon_min, lat_min, lon_max, lat_max))
    lon, lat = region.center or (0.0, 0.0)
    radius_m = (region.radius_km or 0.0) / MARS_RADIUS_KM * EARTH_RADIUS_M
    return SearchFilter(geo_radius=GeoRadius(LOCATION_FIELD, lon, lat, radius_m))


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
    search_filter = region_filter(request.region) if request.region is not None else None
    # One more than the page: tells whether a next page exists without a second search.
    ranked = store.search_batch(
        request.collection,
        np.asarray(query),
        using=IMAGE_VECTOR,
        limit=request.offset + request.k + 1,
        filter=search_filter,
    )[0]
    page = ranked[request.offset : request.offset + request.k]
    more = len(ranked) > request.offset + request.k
    return SearchResponse(
        collection=request.collection,
        hits=[SearchHit(id=hit.id, score=hit.score, payload=hit.payload) for hit in page],
        offset=request.offset,
        next_offset=request.offset + request.k if more else None,
    )

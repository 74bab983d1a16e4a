"""`GET /v1/collections`: what can be searched; `GET .../points/{id}/image`: a point's thumbnail."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi import Path as PathParam

from marsbench.evaluator.api.deps import IndexingDep, PointImagesDep, StoreDep
from marsbench.evaluator.core.collections import searchable_collections
from marsbench.http import GUARDED, error_responses
from marsbench.schemas.search import (
    DEFAULT_THUMBNAIL_PX,
    MAX_THUMBNAIL_PX,
    MIN_THUMBNAIL_PX,
    SearchableCollectionList,
)
from marsbench.security import DatasetRootsDep

router = APIRouter(prefix="/v1/collections", tags=["collections"], responses=error_responses(*GUARDED))

# Thumbnails of a point never change while its collection stands; a short private cache spares
# the dataset reads when a page is reloaded.
THUMBNAIL_CACHE_CONTROL = "private, max-age=300"


@router.get("", responses=error_responses(503))
def list_collections(store: StoreDep, indexing: IndexingDep) -> SearchableCollectionList:
    """The store's collections, with the task, model, dataset and state of each one's latest job."""
    return searchable_collections(store, indexing)


@router.get(
    "/{name}/points/{point_id}/image",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "A JPEG thumbnail."},
        **error_responses(403, 404, 409, 503),
    },
)
def point_image(
    name: Annotated[str, PathParam(max_length=255)],
    point_id: uuid.UUID,
    images: PointImagesDep,
    roots: DatasetRootsDep,
    size: Annotated[int, Query(ge=MIN_THUMBNAIL_PX, le=MAX_THUMBNAIL_PX)] = DEFAULT_THUMBNAIL_PX,
) -> Response:
    """A thumbnail of a stored point's image, read from the dataset its collection was indexed from."""
    data = images.thumbnail(name, str(point_id), size, roots.confine)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": THUMBNAIL_CACHE_CONTROL})

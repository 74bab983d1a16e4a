"""The search page's map data: `GET /v1/collections/{name}/basemap` (the dataset's `mars_map/` or
the bundled relief), `GET /v1/basemap` (the bundled relief), and the ground-truth sites of a
geolocalization collection (`GET /v1/collections/{name}/ground-truth[/{landform}]`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi import Path as PathParam

from marsbench.evaluator.api.deps import PointImagesDep, StoreDep
from marsbench.evaluator.core.mars_map import Basemap, MarsMaps, bundled_basemap
from marsbench.http import GUARDED, error_responses
from marsbench.schemas.maps import GroundTruthSites, LandformList
from marsbench.security import DatasetRootsDep

router = APIRouter(tags=["maps"], responses=error_responses(*GUARDED))

BASEMAP_CACHE_CONTROL = "private, max-age=300"
# FastAPI's type for a route's extra OpenAPI responses.
BASEMAP_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"image/jpeg": {}},
        "description": "An equirectangular JPEG of the whole planet (lon -180..180, lat 90..-90).",
    }
}
CollectionName = Annotated[str, PathParam(max_length=255)]


def get_mars_maps(store: StoreDep, images: PointImagesDep, roots: DatasetRootsDep) -> MarsMaps:
    return MarsMaps(store, images, roots.roots)


MarsMapsDep = Annotated[MarsMaps, Depends(get_mars_maps)]


def _image(basemap: Basemap) -> Response:
    headers = {"Cache-Control": BASEMAP_CACHE_CONTROL, "X-Marsbench-Basemap": basemap.source}
    if basemap.note:
        # Header values must be latin-1 and one line.
        note = basemap.note.replace("\r", " ").replace("\n", " ")[:500]
        headers["X-Marsbench-Basemap-Note"] = note.encode("latin-1", "replace").decode("latin-1")
    return Response(basemap.data, media_type="image/jpeg", headers=headers)


@router.get("/v1/basemap", response_class=Response, responses=BASEMAP_RESPONSE)
def bundled_map() -> Response:
    """The bundled synthetic shaded relief of Mars (not real topography), 1024 x 512."""
    return _image(bundled_basemap())


@router.get(
    "/v1/collections/{name}/basemap",
    response_class=Response,
    responses={**BASEMAP_RESPONSE, **error_responses(403, 404, 503)},
)
def collection_basemap(name: CollectionName, maps: MarsMapsDep, roots: DatasetRootsDep) -> Response:
    """The first map in the collection's dataset `mars_map/` folder, else the bundled relief
    (header `X-Marsbench-Basemap`: `dataset:<file>` or `bundled`)."""
    return _image(maps.basemap(name, roots.confine))


@router.get("/v1/collections/{name}/ground-truth", responses=error_responses(403, 404, 409, 503))
def list_landforms(name: CollectionName, maps: MarsMapsDep, roots: DatasetRootsDep) -> LandformList:
    """The landforms with a ground-truth catalogue in a geolocalization collection's dataset."""
    folder, names = maps.landforms(name, roots.confine)
    return LandformList(collection=name, dataset_dir=str(folder), landforms=names)


@router.get("/v1/collections/{name}/ground-truth/{landform}", responses=error_responses(403, 404, 409, 503))
def ground_truth_sites(
    name: CollectionName,
    landform: Annotated[str, PathParam(max_length=255)],
    maps: MarsMapsDep,
    roots: DatasetRootsDep,
) -> GroundTruthSites:
    """A landform's catalogue points (`ground_truth/<landform>.csv`), for the page to draw."""
    points, skipped = maps.sites(name, landform, roots.confine)
    return GroundTruthSites(
        collection=name, landform=landform, count=len(points), skipped=skipped, points=points
    )

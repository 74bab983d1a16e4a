"""`POST /v1/search`: an interactive query against a live collection; `GET /v1/collections`: what
can be searched, and with which model."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from marsbench.schemas.common import MAX_REF_CHARS, StrictModel
from marsbench.schemas.jobs import JobState

# A query is a caption or a class prompt: far below the encoder's MARSBENCH_ENCODER_MAX_TEXT_CHARS.
MAX_QUERY_CHARS = 10_000


# Places on Mars, in the signed degrees tile names use (and the store's geo filters accept: a value
# beyond them, NaN or infinity was a 500 from the store before it was refused here).
Lon = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
Lat = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
# Half of Mars's circumference (the metrics' radius, 3396.19 km): a circle this wide already holds
# the whole planet.
MAX_RADIUS_KM = 10_670.0


class Region(StrictModel):
    """Restrict results to tiles inside a box, or within a radius of a point (degrees, km)."""

    bbox: tuple[Lon, Lat, Lon, Lat] | None = Field(
        default=None,
        description="lon_min, lat_min, lon_max, lat_max in degrees (lon -180..180, lat -90..90).",
    )
    center: tuple[Lon, Lat] | None = Field(default=None, description="lon, lat in degrees.")
    radius_km: float | None = Field(default=None, gt=0, le=MAX_RADIUS_KM, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_shape(self) -> Region:
        box = self.bbox is not None
        circle = self.center is not None and self.radius_km is not None
        if box == circle or (not circle and (self.center is not None or self.radius_km is not None)):
            raise ValueError("give either 'bbox', or 'center' with 'radius_km'")
        if self.bbox is not None and not (self.bbox[0] <= self.bbox[2] and self.bbox[1] <= self.bbox[3]):
            raise ValueError("bbox must be lon_min, lat_min, lon_max, lat_max with min <= max")
        return self


class SearchRequest(StrictModel):
    collection: str = Field(max_length=255)
    model: str = Field(
        max_length=MAX_REF_CHARS, description="The model the collection was indexed with (embeds the query)."
    )
    text: str | None = Field(default=None, max_length=MAX_QUERY_CHARS)
    image: str | None = Field(default=None, description="A base64 data URI.")
    k: int = Field(default=10, ge=1, le=1_000, description="Hits per page.")
    offset: int = Field(
        default=0, ge=0, le=99_000, description="Hits to skip: pages through up to 100,000 ranked tiles."
    )
    region: Region | None = Field(default=None, description="Geo collections: only tiles in this region.")

    @model_validator(mode="after")
    def _one_query(self) -> SearchRequest:
        if (self.text is None) == (self.image is None):
            raise ValueError("give exactly one of 'text' or 'image'")
        return self


class SearchHit(BaseModel):
    id: str
    score: float
    payload: dict[str, object]


class SearchResponse(BaseModel):
    collection: str
    hits: list[SearchHit]
    offset: int = Field(default=0, description="Rank of the first hit, counting from 0.")
    next_offset: int | None = Field(
        default=None, description="Where the next page starts; None when this page is the last."
    )


# Thumbnails of stored points (`GET /v1/collections/{name}/points/{id}/image?size=`), in pixels.
MIN_THUMBNAIL_PX = 32
MAX_THUMBNAIL_PX = 512
DEFAULT_THUMBNAIL_PX = 192

IndexerLink = Literal["connected", "not configured", "unavailable"]


class SearchableCollection(BaseModel):
    """A collection of the store, with what its latest indexing job says about it."""

    name: str
    vectors: dict[str, int]
    points: int
    task: str | None = Field(
        default=None, description="From the latest indexing job, else from the collection name's first part."
    )
    model: str | None = Field(
        default=None, description="The model the latest job indexed with: what `POST /v1/search` needs."
    )
    dataset_dir: str | None = Field(default=None, description="The dataset the latest job read.")
    state: JobState | None = Field(
        default=None, description="The latest job's state; null when no job of the indexer wrote it."
    )
    geo: bool = Field(description="Whether `region` filters apply (a geo-localization collection).")
    images: bool = Field(
        description="Whether thumbnails can be served: the latest job names the dataset to read them from."
    )


class SearchableCollectionList(BaseModel):
    data: list[SearchableCollection]
    indexer: IndexerLink = Field(
        description="Whether the evaluator could ask the indexer about the collections' jobs "
        "(MARSBENCH_INDEXER_URL); without it, model, dataset and state are unknown."
    )
    message: str | None = Field(default=None, description="Why the jobs are unknown, when they are.")

"""Bodies of the search page's map data: the ground-truth sites of a geolocalization collection."""

from __future__ import annotations

from pydantic import BaseModel, Field


class LandformList(BaseModel):
    """The landforms whose ground-truth catalogue (`ground_truth/<landform>.csv`) a dataset holds."""

    collection: str
    dataset_dir: str = Field(description="The dataset folder, resolved, the catalogues were listed from.")
    landforms: list[str] = Field(description="Sorted catalogue names, usable as {landform}.")


class GroundTruthSites(BaseModel):
    """One landform's catalogue points, in file order."""

    collection: str
    landform: str
    count: int = Field(ge=0, description="Number of points.")
    skipped: int = Field(ge=0, description="Rows whose lon or lat is missing or not a finite number.")
    points: list[tuple[float, float]] = Field(description="(lon, lat) in degrees east and north.")

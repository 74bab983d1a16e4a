"""The search page's map data (issue 18, item 6): the basemap (the dataset's `mars_map/` or the bundled
relief) and the ground-truth sites of a geolocalization collection, both confined to the dataset roots."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from marsbench.datasets.synth._basemap import BASEMAP_WIDTH, PACKAGED, basemap_jpeg
from marsbench.evaluator.api.deps import get_indexing, get_point_images
from marsbench.evaluator.app import create_app
from marsbench.evaluator.core.mars_map import REFERENCE_PLOT, bundled_basemap_path, equirectangular_jpeg
from marsbench.evaluator.core.thumbnails import PointImages
from marsbench.evaluator.settings import EvaluatorSettings
from marsbench.schemas.jobs import JobState, JobStatus, TaskName
from marsbench.store import CollectionSpec, EmbeddedStore

GEO = "geo-fake"
NOW = datetime(2026, 12, 4, tzinfo=UTC)
LANDFORM = "landform-fake"


class Jobs:
    """The indexer's job listing, one finished job per collection."""

    def __init__(self, jobs: dict[str, JobStatus]) -> None:
        self._jobs = jobs

    def jobs(self, collection: str | None = None) -> list[JobStatus]:
        return [job for name, job in self._jobs.items() if collection in (None, name)]


def job(collection: str, task: TaskName, dataset: Path) -> JobStatus:
    return JobStatus(
        id=f"job-{collection}",
        task=task,
        model="fake",
        dataset_dir=str(dataset),
        collection=collection,
        state=JobState.SUCCEEDED,
        total=1,
        done=1,
        skipped=0,
        created_at=NOW,
        updated_at=NOW,
    )


def client_for(
    store: EmbeddedStore, tmp_path: Path, jobs: dict[str, JobStatus], roots: list[Path]
) -> TestClient:
    for name in jobs:
        store.ensure_collection(CollectionSpec(name=name, vectors={"image": 4}))
    settings = EvaluatorSettings(data_dir=tmp_path / "evaluator", dataset_roots=[str(r) for r in roots])
    app = create_app(settings, store=store)
    indexing = Jobs(jobs)
    images = PointImages(store, indexing, dataset_roots=[r.resolve() for r in roots])  # type: ignore[arg-type]
    app.dependency_overrides[get_indexing] = lambda: indexing
    app.dependency_overrides[get_point_images] = lambda: images
    return TestClient(app)


def error_of(response: Any) -> dict[str, Any]:
    """The error object, in the `{"error": {...}}` shape or the older flat one."""
    body = response.json()
    return body["error"] if isinstance(body.get("error"), dict) else body


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.fixture
def roots(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture
def geo(roots: Path, geo_dataset: Path) -> Path:
    """The shared small geo dataset, moved under the roots."""
    moved = roots / "geo"
    geo_dataset.rename(moved)
    return moved


# ----------------------------------------------------------------------------- the bundled map


def test_the_bundled_basemap_is_the_rendered_one_and_equirectangular() -> None:
    assert bundled_basemap_path() == PACKAGED
    data = PACKAGED.read_bytes()
    assert len(data) < 200_000  # small enough to ship
    image = decoded(data)
    assert image.format == "JPEG" and image.size == (BASEMAP_WIDTH, BASEMAP_WIDTH // 2)
    # Deterministic: re-rendering gives the packaged file (`python -m marsbench.datasets.synth._basemap`).
    assert basemap_jpeg() == data


def test_without_a_collection_the_bundled_map_is_served(
    store: EmbeddedStore, tmp_path: Path, roots: Path
) -> None:
    with client_for(store, tmp_path, {}, [roots]) as client:
        response = client.get("/v1/basemap")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert response.headers["x-marsbench-basemap"] == "bundled"
    assert response.content == PACKAGED.read_bytes()


# ----------------------------------------------------------------------------- a collection's map


def test_a_datasets_mars_map_is_served_as_jpeg(
    store: EmbeddedStore, tmp_path: Path, roots: Path, geo: Path
) -> None:
    (geo / "mars_map").mkdir()
    Image.new("RGB", (400, 200), (200, 30, 30)).save(geo / "mars_map" / "mars.png")
    with client_for(store, tmp_path, {GEO: job(GEO, TaskName.GEOLOCALIZATION, geo)}, [roots]) as client:
        response = client.get(f"/v1/collections/{GEO}/basemap")
    assert response.status_code == 200, response.text
    assert response.headers["x-marsbench-basemap"] == "dataset:mars.png"
    image = decoded(response.content)
    assert image.format == "JPEG" and image.size == (400, 200)
    assert image.getpixel((200, 100))[0] > 150  # the dataset's red, not the bundled relief


def test_a_map_in_the_reference_figure_layout_is_cropped_to_its_plot() -> None:
    x, y, w, h = REFERENCE_PLOT
    figure = Image.new("RGB", (x + w + x, y + h + y), (255, 255, 255))  # 2960 x 1458
    figure.paste((10, 10, 200), (x, y, x + w, y + h))
    image = decoded(equirectangular_jpeg(_png(figure), max_px=4096))
    assert image.size == (w, h)
    assert image.getpixel((2, 2))[2] > 150 and image.getpixel((w - 3, h - 3))[2] > 150  # no white margin


def test_without_a_mars_map_folder_the_bundled_map_is_served(
    store: EmbeddedStore, tmp_path: Path, roots: Path, geo: Path
) -> None:
    with client_for(store, tmp_path, {GEO: job(GEO, TaskName.GEOLOCALIZATION, geo)}, [roots]) as client:
        response = client.get(f"/v1/collections/{GEO}/basemap")
    assert response.status_code == 200
    assert response.headers["x-marsbench-basemap"] == "bundled"
    assert "mars_map" in response.headers["x-marsbench-basemap-note"]


def test_a_map_linking_out_of_the_roots_is_not_read(
    store: EmbeddedStore, tmp_path: Path, roots: Path, geo: Path
) -> None:
    outside = tmp_path / "secret.png"
    Image.new("RGB", (64, 32), (0, 255, 0)).save(outside)
    (geo / "mars_map").mkdir()
    (geo / "mars_map" / "mars.png").symlink_to(outside)
    with client_for(store, tmp_path, {GEO: job(GEO, TaskName.GEOLOCALIZATION, geo)}, [roots]) as client:
        response = client.get(f"/v1/collections/{GEO}/basemap")
    assert response.status_code == 200
    assert response.headers["x-marsbench-basemap"] == "bundled"
    assert "outside the dataset roots" in response.headers["x-marsbench-basemap-note"]


def test_a_dataset_outside_the_roots_is_refused(
    store: EmbeddedStore, tmp_path: Path, geo_dataset: Path
) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    jobs = {GEO: job(GEO, TaskName.GEOLOCALIZATION, geo_dataset)}
    with client_for(store, tmp_path, jobs, [allowed]) as client:
        for url in (
            f"/v1/collections/{GEO}/basemap",
            f"/v1/collections/{GEO}/ground-truth",
            f"/v1/collections/{GEO}/ground-truth/yardangs",
        ):
            response = client.get(url)
            assert response.status_code == 403, (url, response.text)
            assert error_of(response)["type"] == "PathNotAllowed"


def test_an_unknown_collection_is_404(store: EmbeddedStore, tmp_path: Path, roots: Path) -> None:
    with client_for(store, tmp_path, {}, [roots]) as client:
        for url in ("/v1/collections/nope/basemap", "/v1/collections/nope/ground-truth/yardangs"):
            response = client.get(url)
            assert response.status_code == 404, (url, response.text)


# ----------------------------------------------------------------------------- ground-truth sites


def test_ground_truth_sites_of_a_geo_collection(
    store: EmbeddedStore, tmp_path: Path, roots: Path, geo: Path
) -> None:
    with client_for(store, tmp_path, {GEO: job(GEO, TaskName.GEOLOCALIZATION, geo)}, [roots]) as client:
        listing = client.get(f"/v1/collections/{GEO}/ground-truth")
        sites = client.get(f"/v1/collections/{GEO}/ground-truth/yardangs")
        missing = client.get(f"/v1/collections/{GEO}/ground-truth/craters")
        dotted = client.get(f"/v1/collections/{GEO}/ground-truth/..")
    assert listing.status_code == 200 and listing.json()["landforms"] == ["yardangs"]
    assert listing.json()["dataset_dir"] == str(geo.resolve())
    assert sites.status_code == 200
    assert sites.json() == {
        "collection": GEO,
        "landform": "yardangs",
        "count": 2,
        "skipped": 1,  # "not,a,row"
        "points": [[1.0, 1.0], [3.0, -2.0]],
    }
    assert missing.status_code == 404 and error_of(missing)["type"] == "LandformNotFound"
    assert dotted.status_code == 404


def test_a_ground_truth_file_linking_out_of_the_roots_is_refused(
    store: EmbeddedStore, tmp_path: Path, roots: Path, geo: Path
) -> None:
    outside = tmp_path / "private.csv"
    outside.write_text("lon,lat\n5,5\n")
    (geo / "ground_truth" / "leak.csv").symlink_to(outside)
    with client_for(store, tmp_path, {GEO: job(GEO, TaskName.GEOLOCALIZATION, geo)}, [roots]) as client:
        response = client.get(f"/v1/collections/{GEO}/ground-truth/leak")
    assert response.status_code == 409
    error = error_of(response)
    assert error["type"] == "SitesUnavailable" and "outside the dataset roots" in error["message"]


def test_a_collection_that_is_not_geo_has_no_sites(
    store: EmbeddedStore, tmp_path: Path, roots: Path, geo: Path
) -> None:
    jobs = {LANDFORM: job(LANDFORM, TaskName.LANDFORM, geo)}
    with client_for(store, tmp_path, jobs, [roots]) as client:
        response = client.get(f"/v1/collections/{LANDFORM}/ground-truth")
        basemap = client.get(f"/v1/collections/{LANDFORM}/basemap")
    assert response.status_code == 409 and "landform collection" in error_of(response)["message"]
    assert basemap.status_code == 200  # a map is still drawn


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()

"""`GET /v1/collections` and `GET /v1/collections/{name}/points/{id}/image` (issue 10, item 3): the
search page's picker and thumbnails, from a collection a real indexing job wrote."""

from __future__ import annotations

import io
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from marsbench.evaluator.api.deps import get_indexing, get_point_images
from marsbench.evaluator.app import create_app
from marsbench.evaluator.core.collections import task_of_name
from marsbench.evaluator.core.errors import ImageUnavailable
from marsbench.evaluator.core.thumbnails import BoundedCache, PointImages, make_thumbnail, open_dataset
from marsbench.evaluator.settings import EvaluatorSettings
from marsbench.indexer.core.jobs import JobManager
from marsbench.schemas.jobs import JobCreate, JobState, JobStatus, TaskName
from marsbench.store import EmbeddedStore, point_id
from tests.fakes import FakeEncoder, IndexerDown, InProcessJobs


@pytest.fixture
def indexed(store: EmbeddedStore, tmp_path: Path, landform_folders: Path) -> tuple[InProcessJobs, JobStatus]:
    manager = JobManager(store, FakeEncoder(), tmp_path / "jobs", batch_size=4, in_flight=1)
    job = manager.submit(JobCreate(task=TaskName.LANDFORM, model="fake", dataset_dir=str(landform_folders)))
    job = manager.wait(job.id, 60)
    assert job.state is JobState.SUCCEEDED and job.done == 15
    return InProcessJobs(manager), job


class Opener:
    """open_dataset, counted."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, task: str, folder: Path, options: Mapping[str, str]) -> object:
        self.calls += 1
        return open_dataset(task, folder, options)


def client_for(
    store: EmbeddedStore, tmp_path: Path, indexing: object | None, *, roots: list[str] | None = None
) -> tuple[TestClient, Opener]:
    settings = EvaluatorSettings(data_dir=tmp_path / "evaluator", dataset_roots=roots or [])
    app = create_app(settings, store=store)
    opener = Opener()
    images = PointImages(store, indexing, opener=opener)  # type: ignore[arg-type]
    app.dependency_overrides[get_indexing] = lambda: indexing
    app.dependency_overrides[get_point_images] = lambda: images
    return TestClient(app), opener


def image_url(job: JobStatus, key: str, size: int | None = None) -> str:
    query = f"?size={size}" if size is not None else ""
    return f"/v1/collections/{job.collection}/points/{point_id(key)}/image{query}"


# ----------------------------------------------------------------------------- the picker


def test_collections_carry_their_latest_jobs_model_and_dataset(
    store: EmbeddedStore, tmp_path: Path, indexed: tuple[InProcessJobs, JobStatus]
) -> None:
    jobs, job = indexed
    client, _ = client_for(store, tmp_path, jobs)
    with client:
        listing = client.get("/v1/collections").json()
    assert listing["indexer"] == "connected" and listing["message"] is None
    [entry] = listing["data"]
    assert entry == {
        "name": job.collection,
        "vectors": {"image": 8},
        "points": 15,
        "task": "landform",
        "model": "fake",
        "dataset_dir": job.dataset_dir,
        "state": "succeeded",
        "geo": False,
        "images": True,
    }


@pytest.mark.parametrize(("indexing", "link"), [(None, "not configured"), (IndexerDown(), "unavailable")])
def test_collections_are_listed_without_jobs_when_the_indexer_is_unknown(
    store: EmbeddedStore,
    tmp_path: Path,
    indexed: tuple[InProcessJobs, JobStatus],
    indexing: object,
    link: str,
) -> None:
    client, _ = client_for(store, tmp_path, indexing)
    with client:
        listing = client.get("/v1/collections").json()
    assert listing["indexer"] == link and listing["message"]
    [entry] = listing["data"]
    assert entry["name"] == indexed[1].collection and entry["points"] == 15
    assert entry["task"] == "landform"  # from the collection name
    assert entry["model"] is None and entry["state"] is None and entry["images"] is False


def test_task_of_name() -> None:
    assert task_of_name("geolocalization__marsbench-tiny__0588e70d") == "geolocalization"
    assert task_of_name("paired__m__v") == "paired"
    assert task_of_name("my-own-collection") is None


# ----------------------------------------------------------------------------- thumbnails


def test_a_thumbnail_is_a_small_jpeg_of_the_points_image(
    store: EmbeddedStore, tmp_path: Path, indexed: tuple[InProcessJobs, JobStatus], landform_folders: Path
) -> None:
    jobs, job = indexed
    client, _ = client_for(store, tmp_path, jobs, roots=[str(landform_folders.parent)])
    with client:
        small = client.get(image_url(job, "yardang/yardang_2.png", 32))
        default = client.get(image_url(job, "yardang/yardang_2.png"))
    assert small.status_code == 200 and small.headers["content-type"] == "image/jpeg"
    assert "max-age" in small.headers["cache-control"]
    with Image.open(io.BytesIO(small.content)) as image:
        assert image.format == "JPEG" and image.size == (32, 32)  # the 40 px source, scaled down
    with Image.open(io.BytesIO(default.content)) as image:
        assert image.size == (40, 40)  # never enlarged


def test_thumbnails_are_cached(
    store: EmbeddedStore, tmp_path: Path, indexed: tuple[InProcessJobs, JobStatus], landform_folders: Path
) -> None:
    jobs, job = indexed
    client, opener = client_for(store, tmp_path, jobs)
    with client:
        first = client.get(image_url(job, "crater/crater_1.png", 64))
        client.get(image_url(job, "crater/crater_2.png", 64))
        (landform_folders / "crater" / "crater_1.png").unlink()
        again = client.get(image_url(job, "crater/crater_1.png", 64))
        other_size = client.get(image_url(job, "crater/crater_1.png", 48))
    assert first.status_code == again.status_code == 200 and again.content == first.content
    assert opener.calls == 1  # the dataset was opened once for all of them
    assert other_size.status_code == 404  # not cached at that size, and the file is gone
    assert "crater_1.png" in other_size.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/v1/collections/{collection}/points/{missing}/image", 404, "PointNotFound"),
        ("/v1/collections/nope/points/{missing}/image", 404, "PointNotFound"),
        ("/v1/collections/{collection}/points/not-a-uuid/image", 422, None),
        ("/v1/collections/{collection}/points/{present}/image?size=16", 422, None),
        ("/v1/collections/{collection}/points/{present}/image?size=513", 422, None),
        ("/v1/collections/{collection}/points/{present}/image?size=x", 422, None),
    ],
)
def test_bad_thumbnail_requests(
    store: EmbeddedStore,
    tmp_path: Path,
    indexed: tuple[InProcessJobs, JobStatus],
    path: str,
    status: int,
    error: str | None,
) -> None:
    jobs, job = indexed
    client, _ = client_for(store, tmp_path, jobs)
    url = path.format(
        collection=job.collection, missing=uuid.uuid4(), present=point_id("crater/crater_0.png")
    )
    with client:
        response = client.get(url)
    assert response.status_code == status, response.text
    if error is not None:
        assert response.json()["error"]["type"] == error


def test_a_dataset_outside_the_roots_is_refused(
    store: EmbeddedStore, tmp_path: Path, indexed: tuple[InProcessJobs, JobStatus]
) -> None:
    jobs, job = indexed
    elsewhere = tmp_path / "allowed"
    elsewhere.mkdir()
    client, opener = client_for(store, tmp_path, jobs, roots=[str(elsewhere)])
    with client:
        response = client.get(image_url(job, "crater/crater_0.png"))
    assert response.status_code == 403
    body = response.json()["error"]
    assert body["type"] == "PathNotAllowed" and body["detail"]["roots"] == [str(elsewhere.resolve())]
    assert opener.calls == 0  # nothing was opened outside the roots


def test_without_an_indexer_or_a_job_the_image_is_unavailable(
    store: EmbeddedStore, tmp_path: Path, indexed: tuple[InProcessJobs, JobStatus]
) -> None:
    _, job = indexed
    for indexing, reason in ((None, "MARSBENCH_INDEXER_URL"), (IndexerDown(), "did not answer")):
        client, _ = client_for(store, tmp_path, indexing)
        with client:
            response = client.get(image_url(job, "crater/crater_0.png"))
        assert response.status_code == 409
        error = response.json()["error"]
        assert error["type"] == "ImageUnavailable" and reason in error["message"]


def test_a_dataset_that_is_gone_is_unavailable(
    store: EmbeddedStore, tmp_path: Path, indexed: tuple[InProcessJobs, JobStatus], landform_folders: Path
) -> None:
    jobs, job = indexed
    moved = landform_folders.rename(tmp_path / "moved")
    client, _ = client_for(store, tmp_path, jobs)
    with client:
        response = client.get(image_url(job, "crater/crater_0.png"))
    assert response.status_code == 409 and str(landform_folders) in response.json()["error"]["message"]
    assert moved.is_dir()


# ----------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "I;16", "CMYK"])
def test_thumbnails_of_any_mode_are_jpegs(mode: str) -> None:
    buffer = io.BytesIO()
    Image.new(mode, (300, 150)).save(buffer, format="TIFF")
    with Image.open(io.BytesIO(make_thumbnail(buffer.getvalue(), 100))) as thumb:
        assert thumb.format == "JPEG" and thumb.size == (100, 50)


def test_undecodable_bytes_are_unavailable_not_a_crash() -> None:
    with pytest.raises(ImageUnavailable, match="cannot be decoded"):
        make_thumbnail(b"not an image", 64)


def test_the_cache_is_bounded_and_keeps_the_recently_used() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3 and len(cache) == 2

import json
from pathlib import Path

import pytest

from marsbench.indexer.core.errors import InvalidJob, JobNotFound
from marsbench.indexer.core.jobs import JobManager
from marsbench.schemas.jobs import JobCreate, JobState, TaskName
from marsbench.store import EmbeddedStore
from tests.fakes import FakeEncoder


def manager(store: EmbeddedStore, tmp_path: Path, encoder: FakeEncoder | None = None) -> JobManager:
    return JobManager(store, encoder or FakeEncoder(), tmp_path / "jobs", batch_size=4, in_flight=2)


def request(dataset: Path) -> JobCreate:
    return JobCreate(task=TaskName.LANDFORM, model="fake", dataset_dir=str(dataset))


def test_job_indexes_the_dataset_and_reports_skips(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path
) -> None:
    jobs = manager(store, tmp_path)
    job = jobs.submit(request(landform_folders))
    finished = jobs.wait(job.id, 30)
    assert finished.total == 16
    assert finished.state is JobState.SUCCEEDED, finished.error
    assert (finished.done, finished.skipped) == (15, 1)
    assert finished.skipped_items[0].key == "crater/broken.png"
    assert store.count(finished.collection) == 15
    [listed] = jobs.collections()
    assert listed.complete is True and listed.points == 15 and listed.model == "fake"


def test_job_state_is_persisted_and_reloaded(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path
) -> None:
    jobs = manager(store, tmp_path)
    job = jobs.wait(jobs.submit(request(landform_folders)).id, 30)
    saved = json.loads((tmp_path / "jobs" / f"{job.id}.json").read_text())
    assert saved["state"] == "succeeded" and saved["done"] == 15
    assert manager(store, tmp_path).get(job.id).done == 15


def test_unfinished_job_resumes_without_reembedding(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path
) -> None:
    jobs = manager(store, tmp_path)
    job = jobs.wait(jobs.submit(request(landform_folders)).id, 30)
    # Pretend the process died mid-job: the state file still says running.
    path = tmp_path / "jobs" / f"{job.id}.json"
    path.write_text(path.read_text().replace('"succeeded"', '"running"'))
    encoder = FakeEncoder()
    restarted = manager(store, tmp_path, encoder)
    assert restarted.resume_unfinished() == [job.id]
    resumed = restarted.wait(job.id, 30)
    assert resumed.state is JobState.SUCCEEDED and resumed.done == 15
    assert encoder.images_embedded == 0  # every point was already there
    assert store.count(job.collection) == 15


def test_missing_dataset_folder_is_an_invalid_job(store: EmbeddedStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidJob, match="does not exist"):
        manager(store, tmp_path).submit(request(tmp_path / "nowhere"))


def test_folder_without_a_known_layout_is_an_invalid_job(store: EmbeddedStore, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidJob):
        manager(store, tmp_path).submit(request(tmp_path / "empty"))


def test_unknown_job_id(store: EmbeddedStore, tmp_path: Path) -> None:
    with pytest.raises(JobNotFound):
        manager(store, tmp_path).get("nope")


def test_changed_weights_behind_the_same_reference_trigger_a_full_reindex(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path
) -> None:
    jobs = manager(store, tmp_path)
    first = jobs.wait(jobs.submit(request(landform_folders)).id, 30)
    same = FakeEncoder()
    again = manager(store, tmp_path, same)
    assert again.wait(again.submit(request(landform_folders)).id, 30).state is JobState.SUCCEEDED
    assert same.images_embedded == 0  # same weights: the collection is reused as is
    rewritten = FakeEncoder(weights="fake-weights-2")  # e.g. a checkpoint overwritten in place
    third = manager(store, tmp_path, rewritten)
    job = third.wait(third.submit(request(landform_folders)).id, 30)
    assert job.state is JobState.SUCCEEDED and job.collection == first.collection
    assert rewritten.images_embedded == 15  # every vector recomputed with the new weights
    assert store.count(job.collection) == 15 and job.weights == "fake-weights-2"

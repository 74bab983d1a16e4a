"""An evaluation of a collection whose indexing has not succeeded is refused with the job's progress,
unless forced, and a forced run's record says so (issue 9, item 5).

The indexing job is real: the JobManager and pipeline fill an embedded store from a landform folder
dataset while the encoder goes away, as in tests/indexer/test_faults.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from marsbench.evaluator.core.errors import IncompleteIndex
from marsbench.evaluator.core.runs import RunService
from marsbench.indexer.core.jobs import JobManager
from marsbench.schemas.jobs import JobCreate, JobState, JobStatus, TaskName
from marsbench.schemas.runs import RunCreate, RunRecord
from marsbench.store import EmbeddedStore
from tests.fakes import FakeEncoder, IndexerDown, InProcessJobs
from tests.indexer.test_faults import EncoderWithOutage, Outage


@pytest.fixture
def failed_job(store: EmbeddedStore, tmp_path: Path, landform_folders: Path) -> tuple[JobManager, JobStatus]:
    outage = Outage(first=3, calls=None)
    jobs = JobManager(
        store, EncoderWithOutage(outage), tmp_path / "jobs", batch_size=2, in_flight=1, retries=0
    )
    job = jobs.submit(JobCreate(task=TaskName.LANDFORM, model="fake", dataset_dir=str(landform_folders)))
    job = jobs.wait(job.id, 60)
    assert job.state is JobState.FAILED
    outage.calls = 0  # the encoder is back, for the resume below
    return jobs, job


def service(store: EmbeddedStore, tmp_path: Path, indexing: object) -> RunService:
    return RunService(store, FakeEncoder(), tmp_path / "runs", indexing=indexing)  # type: ignore[arg-type]


def request(dataset: Path, *, force: bool = False) -> RunCreate:
    return RunCreate(task=TaskName.LANDFORM, model="fake", dataset_dir=str(dataset), force=force)


def test_an_incomplete_collection_is_refused_with_the_jobs_progress(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path, failed_job: tuple[JobManager, JobStatus]
) -> None:
    jobs, job = failed_job
    runs = service(store, tmp_path, InProcessJobs(jobs))
    with pytest.raises(IncompleteIndex) as refused:
        runs.create(request(landform_folders))
    message = str(refused.value)
    assert f"indexing job {job.id} is failed at {job.done} of 16 items" in message
    assert "ServiceUnavailable" in message and f"/v1/jobs/{job.id}/resume" in message and "force" in message
    assert refused.value.detail["job"] == job.id and refused.value.detail["done"] == job.done
    assert runs.list() == []  # nothing evaluated, nothing written


def test_a_forced_run_on_an_incomplete_collection_says_so(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path, failed_job: tuple[JobManager, JobStatus]
) -> None:
    jobs, job = failed_job
    record = service(store, tmp_path, InProcessJobs(jobs)).create(request(landform_folders, force=True))
    assert record.forced is True
    assert record.indexing is not None and record.indexing["state"] == "failed"
    assert record.indexing["done"] == job.done and record.counts["images"] == job.done
    assert record.notes[0].startswith("forced: evaluated while the collection's indexing was failed")
    saved = RunRecord.model_validate_json((tmp_path / "runs" / f"{record.id}.json").read_text())
    assert saved.forced is True


def test_once_resumed_and_complete_the_collection_evaluates_unforced(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path, failed_job: tuple[JobManager, JobStatus]
) -> None:
    jobs, job = failed_job
    jobs.resume(job.id)
    assert jobs.wait(job.id, 60).state is JobState.SUCCEEDED
    record = service(store, tmp_path, InProcessJobs(jobs)).create(request(landform_folders))
    assert record.forced is False and record.indexing is not None
    assert (record.indexing["state"], record.indexing["done"], record.indexing["skipped"]) == (
        "succeeded",
        15,
        1,
    )


def test_an_unreachable_indexer_refuses_unless_forced(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path, failed_job: tuple[JobManager, JobStatus]
) -> None:
    runs = service(store, tmp_path, IndexerDown())
    with pytest.raises(IncompleteIndex, match=r"cannot tell whether collection .* is completely indexed"):
        runs.create(request(landform_folders))
    record = runs.create(request(landform_folders, force=True))
    assert record.forced is True and record.indexing is not None and record.indexing["state"] == "unknown"


def test_without_an_indexer_the_state_is_recorded_as_unknown(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path, failed_job: tuple[JobManager, JobStatus]
) -> None:
    record = service(store, tmp_path, None).create(request(landform_folders))
    assert record.forced is False and record.indexing == {
        "state": "unknown",
        "reason": "the evaluator has no MARSBENCH_INDEXER_URL",
    }

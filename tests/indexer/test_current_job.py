"""Issue 17, item 9: a failed job must not hide a later successful one of the same collection, in
the indexer's collection listing (`complete`) or in the evaluator's completeness check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from marsbench.evaluator.core.errors import IncompleteIndex
from marsbench.evaluator.core.runs import RunService
from marsbench.indexer.core.jobs import JobManager
from marsbench.job_order import current_job
from marsbench.schemas.jobs import JobState, JobStatus

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
COLLECTION = "landform__m__abc"


def job(job_id: str, state: JobState, created_min: int, updated_min: int) -> JobStatus:
    return JobStatus(
        id=job_id,
        task="landform",
        model="m",
        dataset_dir="/data/landform",
        collection=COLLECTION,
        state=state,
        total=4,
        done=4 if state is JobState.SUCCEEDED else 1,
        skipped=0,
        created_at=T0 + timedelta(minutes=created_min),
        updated_at=T0 + timedelta(minutes=updated_min),
    )


# A failed at 10, B created at 20 failed at 25, A resumed and succeeded at 40: A is the latest event.
RESUMED = [job("aaaaaaaaaaaa", JobState.SUCCEEDED, 0, 40), job("bbbbbbbbbbbb", JobState.FAILED, 20, 25)]


def test_the_current_job_is_the_latest_to_finish_or_the_active_one() -> None:
    assert current_job([]) is None
    assert current_job(RESUMED).id == "aaaaaaaaaaaa"
    later_failure = [job("a", JobState.SUCCEEDED, 0, 10), job("b", JobState.FAILED, 20, 25)]
    assert current_job(later_failure).id == "b"  # may have started the collection over: not hidden
    running = [*RESUMED, job("c", JobState.RUNNING, 50, 51), job("d", JobState.QUEUED, 45, 60)]
    assert current_job(running).id == "c"


def test_the_indexers_collection_is_complete_after_a_later_success(tmp_path: Path) -> None:
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    for item in RESUMED:
        (jobs_dir / f"{item.id}.json").write_text(item.model_dump_json())
    info = SimpleNamespace(name=COLLECTION, vectors={"image": 4}, points=4, damaged=None)
    store = SimpleNamespace(list_collections=lambda: [info])
    manager = JobManager(store, object(), jobs_dir, batch_size=4, in_flight=1)  # type: ignore[arg-type]
    (collection,) = manager.collections()
    assert collection.complete is True


def test_the_evaluator_takes_a_later_success_as_complete(tmp_path: Path) -> None:
    indexing = SimpleNamespace(jobs=lambda collection: list(RESUMED))  # oldest created first, as listed
    store = SimpleNamespace(count=lambda collection: 4)  # what the succeeded job wrote
    runs = RunService(store, object(), tmp_path / "runs", indexing=indexing)  # type: ignore[arg-type]
    summary, forced = runs._indexing_state(COLLECTION, force=False)
    assert summary["state"] == "succeeded" and forced is False
    # and the other way round: a failure that ended last is still refused
    indexing.jobs = lambda collection: [
        job("a", JobState.SUCCEEDED, 0, 10),
        job("b", JobState.FAILED, 20, 25),
    ]
    with pytest.raises(IncompleteIndex):
        runs._indexing_state(COLLECTION, force=False)

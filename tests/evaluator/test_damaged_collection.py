"""The evaluator refuses a collection that no longer holds what its indexing job wrote, and a run
record never half-written on a full disk (issue 17, items 3 and 4).

Before: a truncated id tracker loaded 416 of 800 points, the collection listed `complete: true` and
the run was recorded with the wrong metrics. The job here is real (JobManager and pipeline into an
embedded store, fake encoder); the damage is done to the closed store's files.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from marsbench.evaluator.api.errors import STATUS
from marsbench.evaluator.core.errors import IncompleteIndex
from marsbench.evaluator.core.runs import RunService
from marsbench.files import DiskFull
from marsbench.http import status_for
from marsbench.indexer.core.jobs import JobManager
from marsbench.schemas.jobs import JobCreate, JobState, TaskName
from marsbench.schemas.runs import RunCreate
from marsbench.store import EmbeddedStore
from tests.fakes import FakeEncoder, InProcessJobs

IMAGES = 15  # tests.conftest.landform_folders: 16 files, one corrupt


class Stack:
    """An indexer's jobs and an evaluator over one embedded store that can be closed and reopened."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = EmbeddedStore(root / "qdrant")
        self.jobs = JobManager(self.store, FakeEncoder(), root / "jobs", batch_size=4, in_flight=1)

    def reopen(self) -> None:
        self.store.close()
        self.store = EmbeddedStore(self.root / "qdrant")
        self.jobs = JobManager(self.store, FakeEncoder(), self.root / "jobs", batch_size=4, in_flight=1)

    def runs(self) -> RunService:
        return RunService(self.store, FakeEncoder(), self.root / "runs", indexing=InProcessJobs(self.jobs))  # type: ignore[arg-type]

    def index(self, dataset: Path) -> str:
        job = self.jobs.submit(JobCreate(task=TaskName.LANDFORM, model="fake", dataset_dir=str(dataset)))
        job = self.jobs.wait(job.id, 60)
        assert job.state is JobState.SUCCEEDED and job.done == IMAGES
        return job.collection


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    opened = Stack(tmp_path / "state")
    yield opened
    opened.store.close()


def request(dataset: Path, *, force: bool = False) -> RunCreate:
    return RunCreate(task=TaskName.LANDFORM, model="fake", dataset_dir=str(dataset), force=force)


def _truncate_id_tracker(stack: Stack, collection: str) -> None:
    [path] = (stack.root / "qdrant" / "collections" / collection).rglob("mutable_id_tracker.mappings")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_damaged_sealed_collection_is_refused_and_a_new_job_rebuilds_it(
    stack: Stack, landform_folders: Path
) -> None:
    collection = stack.index(landform_folders)
    stack.store.close()
    _truncate_id_tracker(stack, collection)
    stack.reopen()

    with pytest.raises(IncompleteIndex) as refused:
        stack.runs().create(request(landform_folders, force=True))  # forcing cannot use it either
    message = str(refused.value)
    assert f"collection {collection!r} is damaged" in message and "index it again" in message
    assert refused.value.detail["damaged"]
    assert not list((stack.root / "runs").glob("*.json"))  # no record with wrong metrics
    [listed] = stack.jobs.collections()
    assert listed.complete is False  # before: complete: true

    stack.index(landform_folders)  # a new job deletes and rebuilds it
    record = stack.runs().create(request(landform_folders))
    assert record.counts["images"] == IMAGES and not record.forced


def test_a_collection_holding_fewer_points_than_its_job_wrote_is_refused_unless_forced(
    stack: Stack, landform_folders: Path
) -> None:
    """No manifest (indexed before sealing existed): the count against the job's is what tells."""
    collection = stack.index(landform_folders)
    stack.store.close()
    (stack.root / "qdrant" / "collections" / collection / "manifest.json").unlink()
    _truncate_id_tracker(stack, collection)
    stack.reopen()
    held = stack.store.count(collection)
    assert held < IMAGES  # what the engine does with it: no error, fewer points

    with pytest.raises(IncompleteIndex) as refused:
        stack.runs().create(request(landform_folders))
    assert f"it holds {held} points, but its indexing job" in str(refused.value)
    assert f"wrote {IMAGES}" in str(refused.value)
    assert stack.jobs.collections()[0].complete is False

    record = stack.runs().create(request(landform_folders, force=True))
    assert record.forced and record.indexing is not None
    assert record.indexing["done"] == IMAGES and record.indexing["points"] == held  # never done=15 alone
    assert record.notes[0].startswith("forced: evaluated a damaged collection")

    stack.index(landform_folders)  # the new job adds the lost points back
    assert stack.store.count(collection) == IMAGES
    assert not stack.runs().create(request(landform_folders)).forced


def test_a_run_record_on_a_full_disk_is_a_507_and_leaves_no_file(
    stack: Stack, landform_folders: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.index(landform_folders)
    runs = stack.runs()

    def no_space(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", no_space)
    with pytest.raises(DiskFull) as refused:
        runs.create(request(landform_folders))
    monkeypatch.undo()
    assert "not recorded" in str(refused.value) and "no space left" in str(refused.value)
    assert status_for(refused.value, STATUS) == 507
    assert list((stack.root / "runs").iterdir()) == []  # before: a 0-byte record

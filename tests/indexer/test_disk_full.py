"""A full disk during indexing (issue 17, item 4).

The embedded engine writes through memory maps, where running out of space is a SIGBUS that kills
the process without a message. So a job checks the free space (`min_free_disk_mb`,
MARSBENCH_MIN_FREE_DISK_MB) before it starts and before each batch it writes, and fails with the
reason below it; what it indexed stays, and resuming continues it. The disk is simulated by
monkeypatching `shutil.disk_usage` (free space) and `os.write` (ENOSPC).
"""

from __future__ import annotations

import errno
import os
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from marsbench.files import DiskFull, write_text_atomic
from marsbench.indexer.core.jobs import JobManager
from marsbench.schemas.jobs import JobCreate, JobState, TaskName
from marsbench.store import EmbeddedStore
from tests.fakes import FakeEncoder

IMAGES = 15  # tests.conftest.landform_folders: 16 files, one corrupt
_Usage = namedtuple("_Usage", "total used free")
_MB = 1 << 20


class Disk:
    """`shutil.disk_usage` of a disk with `free_mb` free, filling to `low_mb` after `calls` checks."""

    def __init__(self, free_mb: int, *, calls: int | None = None, low_mb: int = 10) -> None:
        self.free_mb, self.calls, self.low_mb, self.seen = free_mb, calls, low_mb, 0

    def __call__(self, path: object) -> _Usage:
        self.seen += 1
        full = self.calls is not None and self.seen > self.calls
        free = (self.low_mb if full else self.free_mb) * _MB
        return _Usage(100_000 * _MB, 100_000 * _MB - free, free)


def manager(store: EmbeddedStore, tmp_path: Path) -> JobManager:
    return JobManager(
        store, FakeEncoder(), tmp_path / "jobs", batch_size=2, in_flight=1, retries=2,
        retry_backoff_s=0.01, min_free_disk_mb=100, disk_path=tmp_path,
    )  # fmt: skip


def landform(dataset: Path) -> JobCreate:
    return JobCreate(task=TaskName.LANDFORM, model="fake", dataset_dir=str(dataset))


def test_a_job_stops_before_the_disk_fills_keeps_what_it_wrote_and_resumes(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = Disk(5000, calls=4)  # the start check and three batches, then 10 MB free
    monkeypatch.setattr(shutil, "disk_usage", disk)
    jobs = manager(store, tmp_path)
    job = jobs.wait(jobs.submit(landform(landform_folders)).id, 60)

    assert job.state is JobState.FAILED
    assert job.attempts == 1  # not retried: waiting does not free space
    assert "DiskFull: only 10 MB free" in (job.error or "")
    assert "MARSBENCH_MIN_FREE_DISK_MB=100" in (job.error or "")
    assert f"POST /v1/jobs/{job.id}/resume continues it" in (job.error or "")
    written = store.count(job.collection)
    assert 0 < written < IMAGES and job.done == written  # the batches before the check are kept

    disk.calls = None  # space freed
    jobs.resume(job.id)
    job = jobs.wait(job.id, 60)
    assert job.state is JobState.SUCCEEDED and job.done == store.count(job.collection) == IMAGES


def test_a_job_on_a_nearly_full_disk_does_not_start(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "disk_usage", Disk(50))
    jobs = manager(store, tmp_path)
    job = jobs.wait(jobs.submit(landform(landform_folders)).id, 60)
    assert job.state is JobState.FAILED and "only 50 MB free" in (job.error or "")
    assert store.list_collections() == []  # stopped before creating anything


def _no_space(fd: int, data: bytes) -> int:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_an_atomic_write_on_a_full_disk_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    write_text_atomic(path, '{"done": 8}')
    monkeypatch.setattr(os, "write", _no_space)
    with pytest.raises(DiskFull, match=r"no space left on the disk holding .* while writing state\.json"):
        write_text_atomic(path, '{"done": 9}')
    assert path.read_text() == '{"done": 8}'  # before: a 0-byte file once the disk filled
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_full_disk_while_saving_job_state_does_not_kill_the_job(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's state file cannot be written: the job still ends (failed by the free-space check
    here), its state in memory says why, and no temporary file is left behind."""
    jobs = manager(store, tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", Disk(50))
    real_write = os.write
    monkeypatch.setattr(
        os, "write", lambda fd, data: _no_space(fd, data) if jobs.list() else real_write(fd, data)
    )
    job = jobs.wait(jobs.submit(landform(landform_folders)).id, 60)
    assert job.state is JobState.FAILED and "DiskFull" in (job.error or "")
    assert not [p for p in (tmp_path / "jobs").iterdir() if p.name.endswith(".tmp")]

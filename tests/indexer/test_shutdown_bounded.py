"""Issue 17, item 9: shutting down with a job in the middle of a slow encoder call stops within a
few seconds (not after the call), and leaves the job interrupted and resumable, not failed."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from marsbench.indexer.core.jobs import JobManager
from marsbench.schemas.jobs import JobCreate, JobState, JobStatus, TaskName
from marsbench.store import EmbeddedStore
from tests.fakes import FakeEncoder

CALL_S = 20.0  # one encoder call: the job cannot reach a batch boundary before shutdown must end


class SlowEncoder(FakeEncoder):
    def __init__(self) -> None:
        super().__init__()
        self.calling = threading.Event()

    def embed_images(
        self, model: str, images: Sequence[bytes], names: Sequence[str] | None = None
    ) -> np.ndarray:
        self.calling.set()
        time.sleep(CALL_S)
        return super().embed_images(model, images, names)


def test_shutdown_mid_call_is_quick_and_leaves_the_job_resumable(
    tmp_path: Path, landform_folders: Path
) -> None:
    store = EmbeddedStore(tmp_path / "qdrant")
    encoder = SlowEncoder()
    jobs = JobManager(store, encoder, tmp_path / "jobs", batch_size=4, in_flight=1)
    job = jobs.submit(JobCreate(task=TaskName.LANDFORM, model="fake", dataset_dir=str(landform_folders)))
    assert encoder.calling.wait(30)

    started = time.monotonic()
    jobs.shutdown()
    assert time.monotonic() - started < 5.0

    saved = JobStatus.model_validate_json((tmp_path / "jobs" / f"{job.id}.json").read_text())
    assert saved.state is JobState.QUEUED and "interrupted" in (saved.error or "")
    time.sleep(0.2)  # a late word from the abandoned thread must not overwrite that
    again = JobStatus.model_validate_json((tmp_path / "jobs" / f"{job.id}.json").read_text())
    assert again.state is JobState.QUEUED
    store.close()

"""SIGKILL the service process in the middle of a geo indexing job, restart it, and check that the
job resumes from its persisted state and ends with every tile exactly once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from marsbench.datasets.synth import synthesize
from tests.e2e.serve_process import ServeProcess

pytestmark = pytest.mark.e2e
MODEL = "open_clip:ViT-S-32:random"  # random weights, asked for: slow enough on CPU to be killed mid-job


def serve(data_dir: Path, log_path: Path) -> ServeProcess:
    process = ServeProcess(data_dir, log_path, index_batch=8, in_flight=2, encoder_batch=16)
    process.wait_ready()
    return process


@pytest.fixture
def served(tmp_path: Path) -> Iterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    yield started
    for process in started:
        process.stop()


def test_killed_geo_job_resumes_to_a_complete_collection(tmp_path: Path, served: list[ServeProcess]) -> None:
    dataset = synthesize(tmp_path / "data", scale="small", tasks=("geo",)).geo.dataset_dir
    data_dir = tmp_path / "state"
    first = serve(data_dir, tmp_path / "first.log")
    served.append(first)
    job = httpx.post(
        f"{first.indexer}/v1/jobs",
        json={"task": "geolocalization", "model": MODEL, "dataset_dir": str(dataset)},
        timeout=120,
    ).json()
    total = 800  # the synthetic small geo set; the job counts it on its own thread
    deadline = time.monotonic() + 180
    while (status := first.job(job["id"]))["done"] < total // 3:
        assert status["state"] in ("queued", "running"), status
        assert time.monotonic() < deadline, "indexing made no progress"
        time.sleep(0.05)
    first.kill()

    saved = json.loads((data_dir / "jobs" / f"{job['id']}.json").read_text())
    assert saved["state"] == "running"  # the kill left the job unfinished on disk
    assert 0 < saved["done"] < total
    assert saved["completed_units"]  # at least one shard was finished: the restart skips it

    second = serve(data_dir, tmp_path / "second.log")  # resumes unfinished jobs at start-up
    served.append(second)
    deadline = time.monotonic() + 240
    while (status := second.job(job["id"]))["state"] != "succeeded":
        assert status["state"] in ("queued", "running"), status
        assert time.monotonic() < deadline, "the resumed job did not finish"
        time.sleep(0.2)

    assert status["total"] == total and status["done"] == total and status["skipped"] == 0
    finished = status["completed_units"]
    assert set(saved["completed_units"]) <= set(finished)  # shards finished before the kill stay finished
    assert len(finished) == len(set(finished)) == 4  # every shard, each once
    collections = httpx.get(f"{second.indexer}/v1/collections", timeout=10).json()["data"]
    [collection] = [c for c in collections if c["name"] == status["collection"]]
    assert collection["points"] == total  # no tile twice (ids are derived from tile keys), none missing
    assert collection["complete"] is True

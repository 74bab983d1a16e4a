"""SIGKILL the service process in the middle of a geo indexing job, restart it, and check that the
job resumes from its persisted state and ends with every tile exactly once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from marsbench.datasets.synth import synthesize

pytestmark = pytest.mark.e2e
MODEL = "open_clip:ViT-S-32:random"  # random weights, asked for: slow enough on CPU to be killed mid-job


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


class Serve:
    """`marsbench serve` in its own process, as a user runs it."""

    def __init__(self, data_dir: Path) -> None:
        self.ports = free_ports(3)
        env = {
            **os.environ,
            "MARSBENCH_INDEX_BATCH_SIZE": "8",
            "MARSBENCH_INDEX_IN_FLIGHT": "2",
            "MARSBENCH_ENCODER_MAX_BATCH_SIZE": "16",
        }
        command = [sys.executable, "-m", "marsbench.cli.main", "serve", "--data-dir", str(data_dir)]
        for flag, port in zip(
            ("--encoder-port", "--indexer-port", "--evaluator-port"), self.ports, strict=True
        ):
            command += [flag, str(port)]
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.indexer = f"http://127.0.0.1:{self.ports[1]}"
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited: {self.process.stdout.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{self.indexer}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError("serve did not come up")

    def job(self, job_id: str) -> dict:
        return httpx.get(f"{self.indexer}/v1/jobs/{job_id}", timeout=10).json()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for serve in started:
        serve.stop()


def test_killed_geo_job_resumes_to_a_complete_collection(tmp_path: Path, served: list[Serve]) -> None:
    dataset = synthesize(tmp_path / "data", scale="small", tasks=("geo",)).geo.dataset_dir
    data_dir = tmp_path / "state"
    first = Serve(data_dir)
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

    second = Serve(data_dir)  # resumes unfinished jobs at start-up
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

"""The trainer app: `POST /v1/train` runs `marsbench train`'s options in a worker process, one job
at a time; `GET /v1/train/{id}` follows it; errors in the one error body; the shared security."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from pydantic import SecretStr

from marsbench.schemas.jobs import JobState
from marsbench.schemas.training import TrainJobStatus
from marsbench.training.app import create_app
from marsbench.training.config import TrainingRecord
from marsbench.training.events import StepEvent
from marsbench.training.jobs import apply_step
from marsbench.training.settings import TrainerSettings

KEY = "k" * 32
AUTH = {"Authorization": f"Bearer {KEY}"}
FINISHED = {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
# Tiny: a few steps of a small batch, so each job's worker process takes seconds.
OPTIONS = {"steps": 4, "batch_size": 16, "threads": 1, "device": "cpu", "checkpoint_every": 2}


@pytest.fixture(scope="module")
def client(pairs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    train_dir, roots = tmp_path_factory.mktemp("trainer"), [str(pairs_dir.parent)]
    settings = TrainerSettings(train_dir=train_dir, dataset_roots=roots, api_key=SecretStr(KEY))
    with TestClient(create_app(settings), headers=AUTH) as test_client:
        yield test_client


def wait(client: TestClient, job_id: str, timeout_s: float = 180.0) -> TrainJobStatus:
    deadline = time.monotonic() + timeout_s
    while True:
        status = TrainJobStatus.model_validate(client.get(f"/v1/train/{job_id}").json())
        if status.state in FINISHED or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def test_a_job_runs_to_its_outputs_one_at_a_time(client: TestClient, pairs_dir: Path) -> None:
    first = client.post("/v1/train", json={"dataset_dir": str(pairs_dir), "out": "a", **OPTIONS})
    assert first.status_code == 202, first.text
    job = TrainJobStatus.model_validate(first.json())
    assert job.state in (JobState.QUEUED, JobState.RUNNING) and job.total == 4
    # The same output folder while the first job is active: refused; another folder: queued behind it.
    again = client.post("/v1/train", json={"dataset_dir": str(pairs_dir), "out": "a", **OPTIONS})
    assert again.status_code == 409 and again.json()["error"]["type"] == "TrainJobConflict"
    second = client.post("/v1/train", json={"dataset_dir": str(pairs_dir), "out": "b", **OPTIONS})
    assert second.json()["state"] == "queued"
    cancelled = client.post(f"/v1/train/{second.json()['id']}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["state"] == "cancelled"

    done = wait(client, job.id)
    assert done.state == JobState.SUCCEEDED, done.error
    assert done.step == done.total == 4 and done.eta_s == 0.0 and (done.rate or 0) > 0
    assert [p.step for p in done.curve] == [1, 2, 3, 4] and done.loss == done.curve[-1].loss
    assert done.outputs is not None and done.started_at is not None and done.finished_at is not None
    record = TrainingRecord.model_validate_json(Path(done.outputs.record).read_text())
    assert [p.loss for p in done.curve] == record.losses and done.outputs.name == record.name
    assert Path(done.outputs.out_dir) == Path(done.out_dir) and Path(done.out_dir).name == "a"
    weights = torch.load(done.outputs.checkpoint, map_location="cpu", weights_only=True)
    assert weights["step"] == 4 and weights["name"] == record.name
    assert record.hyperparameters["batch_size"] == 16 and record.data.path == str(pairs_dir.resolve())
    listed = client.get("/v1/train").json()["data"]
    assert [j["id"] for j in listed] == [job.id, second.json()["id"]]
    assert client.post(f"/v1/train/{job.id}/cancel").status_code == 409


def test_a_failing_run_is_failed_with_the_reason(client: TestClient, pairs_dir: Path) -> None:
    body = {"dataset_dir": str(pairs_dir), "out": "too-big", **OPTIONS, "batch_size": 1000}
    job = client.post("/v1/train", json=body).json()
    done = wait(client, job["id"])
    assert done.state == JobState.FAILED and done.outputs is None
    assert "fewer than one batch of 1000" in (done.error or "")


def test_progress_is_applied_step_by_step(pairs_dir: Path) -> None:
    status = TrainJobStatus.model_validate(
        {"id": "x", "state": "running", "request": {"dataset_dir": str(pairs_dir)}, "out_dir": "/o",
         "created_at": "2026-01-01T00:00:00Z"}
    )  # fmt: skip
    for step in (1, 2):
        apply_step(
            status, StepEvent(step=step, total=5, loss=3.0 - step, lr=1e-4, rate=2.0, eta_s=(5 - step) / 2)
        )
    assert (status.step, status.total, status.loss, status.rate, status.eta_s) == (2, 5, 1.0, 2.0, 1.5)
    assert [(p.step, p.loss) for p in status.curve] == [(1, 2.0), (2, 1.0)]


def test_errors_are_error_bodies(client: TestClient, pairs_dir: Path, tmp_path: Path) -> None:
    missing = client.get("/v1/train/0123456789ab")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "TrainJobNotFound"
    assert missing.json()["error"]["code"] == "train_job_not_found"
    outside = client.post("/v1/train", json={"dataset_dir": str(tmp_path)})
    assert outside.status_code == 403 and outside.json()["error"]["type"] == "PathNotAllowed"
    linked = client.post("/v1/train", json={"dataset_dir": str(pairs_dir / ".." / ".." / "..")})
    assert linked.status_code == 403
    registry = client.post("/v1/train", json={"dataset_dir": str(pairs_dir), "registry": [str(tmp_path)]})
    assert registry.status_code == 403
    for bad in ({"out": "../escape"}, {"steps": 0}, {"unknown": 1}, {"device": "tpu"}):
        answer = client.post("/v1/train", json={"dataset_dir": str(pairs_dir), **bad})
        assert answer.status_code == 422 and answer.json()["error"]["type"] == "ValidationError", bad
    too_many = client.post("/v1/train", json={"dataset_dir": str(pairs_dir), "nproc": 99})
    assert too_many.status_code == 422 and "MARSBENCH_TRAIN_MAX_NPROC" in too_many.json()["error"]["message"]
    uneven = client.post("/v1/train", json={"dataset_dir": str(pairs_dir), "nproc": 3, "batch_size": 32})
    assert uneven.status_code == 422 and uneven.json()["error"]["type"] == "InvalidTrainJob"
    no_folder = client.post("/v1/train", json={"dataset_dir": str(pairs_dir / "nope")})
    assert no_folder.status_code == 422


def test_the_api_key_is_required_but_not_for_probes(client: TestClient) -> None:
    anonymous = client.get("/v1/train", headers={"Authorization": ""})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["type"] == "Unauthorized"
    assert client.get("/healthz", headers={"Authorization": ""}).status_code == 200


def test_the_app_refuses_to_listen_beyond_loopback_without_roots(tmp_path: Path) -> None:
    from marsbench.security import StartupRefused

    with pytest.raises(StartupRefused, match="MARSBENCH_DATASET_ROOTS"):
        create_app(TrainerSettings(train_dir=tmp_path, api_key=SecretStr(KEY), host="0.0.0.0"))

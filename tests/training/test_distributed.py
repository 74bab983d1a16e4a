"""A real 2-process torchrun run (gloo, CPU) against a 1-process run over the same global batches.

ClipLoss runs with gather_with_grad and local_loss under DDP (training/src/marsbench/training/loop.py says why
that is the global batch's loss and gradient): so not only step 1's loss but the later ones, which
depend on the gradients of the steps before, match the 1-process run. A learning rate of 1e-3
with no warm-up makes a wrong gradient visible by step 3 (without gather_with_grad the losses part
by about 1e-4 there; with local_loss but no gather_with_grad by 0.3 at step 2).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from marsbench.cli.main import main
from marsbench.encoder.adapters import RuntimeOptions, load_model
from marsbench.encoder.registry import registered_specs, resolve_model
from marsbench.training.config import TrainConfig, TrainingRecord
from marsbench.training.events import StepEvent, WorkerEvent
from marsbench.training.launch import run_training, worker_command
from marsbench.training.runner import outcome_from_record, train

STEPS = 3


def config(data: Path, out: Path) -> TrainConfig:
    return TrainConfig(
        data_dir=data, out_dir=out, steps=STEPS, batch_size=32, lr=1e-3, warmup_steps=0, threads=1,
        device="cpu", checkpoint_every=STEPS,
    )  # fmt: skip


def test_two_processes_train_as_one_over_the_same_global_batches(pairs_dir: Path, tmp_path: Path) -> None:
    events: list[WorkerEvent] = []
    out = tmp_path / "ddp"
    record_path, result = run_training(
        config(pairs_dir, out), nproc=2, workdir=tmp_path / "work", on_event=events.append
    )
    assert result.returncode == 0 and not result.errors, list(result.tail)

    # Both ranks ran the whole run; only rank 0 reported steps and wrote files.
    ranks = sorted(result.ranks, key=lambda r: r.rank)
    assert [(r.rank, r.world_size, r.steps) for r in ranks] == [(0, 2, STEPS), (1, 2, STEPS)]
    assert ranks[1].written == []
    record = TrainingRecord.model_validate_json(record_path.read_text())
    expected = {
        out / "heldout", out / "checkpoints" / "epoch_latest.pt", out / f"{record.name}.pt", out / "loss.png",
        out / "registry.toml", out / "training.json",
    }  # fmt: skip
    assert {Path(p) for p in ranks[0].written} == expected
    assert set(out.iterdir()) | set((out / "checkpoints").iterdir()) == expected | {out / "checkpoints"}
    assert [e.step for e in events if isinstance(e, StepEvent)] == [1, 2, 3]
    assert record.world_size == 2 and record.steps == STEPS and len(record.losses) == STEPS

    # The checkpoints load: the resumable one with its optimizer, the weights through the encoder.
    resume = torch.load(record.resume_checkpoint, map_location="cpu", weights_only=True)
    assert resume["step"] == STEPS and {"state_dict", "optimizer"} <= set(resume)
    outcome = outcome_from_record(record_path)
    tuned = load_model(
        resolve_model(record.name, registered_specs([outcome.registry_path])), RuntimeOptions("cpu")
    )
    assert np.isfinite(tuned.embed_texts(["a crater field on Mars"])).all()

    # The same global batches in one process: the same losses (floating-point reduction order apart).
    single = train(config(pairs_dir, tmp_path / "one"), log=lambda _: None).record
    assert single.world_size == 1
    assert record.losses[0] == pytest.approx(single.losses[0], rel=1e-6)
    assert np.allclose(record.losses, single.losses, rtol=0, atol=1e-5)
    a = torch.load(outcome.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    b = torch.load(single.checkpoint.path, map_location="cpu", weights_only=True)["state_dict"]
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4


def test_worker_command_runs_torchrun_only_for_several_processes(tmp_path: Path) -> None:
    one = worker_command(tmp_path / "c.json", 1)
    two = worker_command(tmp_path / "c.json", 2)
    assert one[1:] == ["-m", "marsbench.training", "--config", str(tmp_path / "c.json")]
    assert two[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m"]
    assert two[-4:] == one[1:]


def test_cli_refuses_a_batch_that_does_not_split(
    pairs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--data", str(pairs_dir), "--out", str(tmp_path), "--nproc", "3", "--batch-size", "32"]
    assert main(argv) == 2
    assert "does not split over --nproc 3" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())

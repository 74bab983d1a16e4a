"""`marsbench train` on tiny synthetic pairs: loss, checkpoints, resume, held-out gain, CLI -> benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from marsbench.encoder.adapters import RuntimeOptions, load_model
from marsbench.encoder.registry import registered_specs, resolve_model
from marsbench.schemas.runs import RunRecord
from marsbench.training.config import TrainConfig, TrainingRecord
from marsbench.training.data import is_heldout, read_pairs
from marsbench.training.runner import TrainOutcome, train

# Measured (2 shared cores, 1 thread): 182 training / 58 held-out pairs of the small seed-5 set,
# 30 steps, batch 32, lr 1e-4 -> loss 2.45 -> 0.73; held-out i2t MRR 51.95 -> 53.70 (docs/training.md).
STEPS, LR = 30, 1e-4


def config(data: Path, out: Path, **changes: object) -> TrainConfig:
    fields: dict[str, object] = {
        "data_dir": data, "out_dir": out, "steps": STEPS, "lr": LR, "batch_size": 32, "threads": 1,
        "warmup_steps": 5, "checkpoint_every": 10, "device": "cpu",
    }  # fmt: skip
    return TrainConfig.model_validate(fields | changes)


@pytest.fixture(scope="module")
def trained(pairs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainOutcome:
    return train(config(pairs_dir, tmp_path_factory.mktemp("run")), log=lambda _: None)


def test_split_is_by_key_and_written_as_its_own_dataset(trained: TrainOutcome, pairs_dir: Path) -> None:
    data = read_pairs(pairs_dir, "refined_caption", 0.2)
    assert all(is_heldout(p.key, 0.2) for p in data.heldout)
    assert not any(is_heldout(p.key, 0.2) for p in data.train)
    written = read_pairs(trained.heldout_dir, "refined_caption", 0.0)
    assert sorted(p.key for p in written.train) == sorted(p.key for p in data.heldout)
    assert trained.record.data.split.heldout_pairs == len(data.heldout) > 0


def test_loss_decreases_and_record_is_complete(trained: TrainOutcome) -> None:
    record = TrainingRecord.model_validate_json(trained.record_path.read_text())
    assert record.steps == STEPS and len(record.losses) == STEPS
    assert np.mean(record.losses[-5:]) < 0.6 * np.mean(record.losses[:5])
    assert record.hyperparameters["lr"] == LR
    assert Path(record.loss_curve or "").stat().st_size > 0
    assert record.name.startswith("marsbench-tiny-ft-")


def test_checkpoint_is_open_clip_format_and_loads_through_the_encoder(trained: TrainOutcome) -> None:
    state = torch.load(trained.checkpoint, map_location="cpu", weights_only=True)
    assert {"epoch", "step", "name", "state_dict"} <= set(state) and state["step"] == STEPS
    resume = torch.load(trained.record.resume_checkpoint, map_location="cpu", weights_only=True)
    assert {"epoch", "state_dict", "optimizer"} <= set(resume)
    specs = registered_specs([trained.registry_path])
    tuned = load_model(resolve_model(trained.record.name, specs), RuntimeOptions(device="cpu"))
    by_ref = load_model(resolve_model(f"marsbench-tiny@{trained.checkpoint}", specs), RuntimeOptions("cpu"))
    base = load_model(resolve_model("marsbench-tiny", specs), RuntimeOptions(device="cpu"))
    texts = ["a crater field on Mars", "bright slope streaks"]
    assert np.allclose(tuned.embed_texts(texts), by_ref.embed_texts(texts))
    assert not np.allclose(tuned.embed_texts(texts), base.embed_texts(texts), atol=1e-3)


def test_heldout_gain(trained: TrainOutcome) -> None:
    """Measured, not general: at this size only some metrics rise (docs/training.md gives all)."""
    before, after = trained.record.heldout_before, trained.record.heldout_after
    assert after["i2t_mrr"] > before["i2t_mrr"]
    assert after["t2i_r10"] > before["t2i_r10"]


class Interrupt(Exception):
    pass


def test_resume_matches_an_uninterrupted_run(pairs_dir: Path, tmp_path: Path) -> None:
    whole = train(config(pairs_dir, tmp_path / "a", steps=12, checkpoint_every=6), log=lambda _: None)

    def stop_at_9(report: object) -> None:
        if getattr(report, "step", 0) == 9:
            raise Interrupt

    cut = config(pairs_dir, tmp_path / "b", steps=12, checkpoint_every=6)
    with pytest.raises(Interrupt):
        train(cut, on_step=stop_at_9, log=lambda _: None)
    resumed = train(cut, log=lambda _: None)
    assert resumed.record.resumed_from_step == 6
    assert resumed.record.losses == whole.record.losses
    assert resumed.record.checkpoint.sha256 != ""
    a = torch.load(whole.checkpoint, weights_only=True)["state_dict"]
    b = torch.load(resumed.checkpoint, weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cli_trains_registers_and_benchmarks_the_heldout_split(
    pairs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from marsbench.cli.main import main

    out = tmp_path / "cli"
    argv = ["train", "--data", str(pairs_dir), "--out", str(out), "--steps", "8", "--threads", "1"]
    assert main([*argv, "--benchmark"]) == 0
    printed = capsys.readouterr().out
    assert "held-out split" in printed and "gain" in printed
    training = TrainingRecord.model_validate_json((out / "training.json").read_text())
    runs = [RunRecord.model_validate_json(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    assert {r.model for r in runs} == {"marsbench-tiny", training.name}
    tuned = next(r for r in runs if r.model == training.name)
    assert tuned.provenance is not None and tuned.provenance.training is not None
    assert tuned.provenance.training.checkpoint_sha256 == training.checkpoint.sha256
    assert tuned.provenance.dataset.fingerprint == training.data.split.heldout_fingerprint
    assert tuned.counts["pairs"] == training.data.split.heldout_pairs
    assert json.loads((out / "training.json").read_text())["steps"] == 8

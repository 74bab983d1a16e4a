"""What a training run is asked to do (`TrainConfig`) and what it leaves behind (`TrainingRecord`).

Both are pydantic models: the CLI and any HTTP endpoint validate their input into `TrainConfig`,
and `TrainingRecord` is the JSON file (`training.json`) that run records of the fine-tuned model
link to (`provenance.training`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from marsbench.datasets.paired import DEFAULT_CAPTION_KEY
from marsbench.schemas.training import TrainOptions

Device = Literal["auto", "cpu", "cuda"]


class TrainConfig(BaseModel):
    """Contrastive fine-tuning of an open_clip model on paired WebDataset shards."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(description="Folder of paired WebDataset shards (`000000.tar`, ...).")
    out_dir: Path = Field(description="Checkpoints, held-out split, registry entry, record, curve.")
    model: str = Field(default="marsbench-tiny", min_length=1, description="Base model reference.")
    registry: list[Path] = Field(default_factory=list, description="Extra registry files for `model`.")
    caption_key: str = Field(default=DEFAULT_CAPTION_KEY, description="The caption field trained on.")
    eval_split: float = Field(
        default=0.2, ge=0.0, lt=1.0, description="Share of samples held out, by a hash of the sample key."
    )
    steps: int = Field(default=60, ge=1, description="Optimiser steps in all.")
    batch_size: int = Field(default=32, ge=2, description="Global batch (split across ranks).")
    lr: float = Field(default=1e-4, gt=0)
    weight_decay: float = Field(default=0.1, ge=0)
    warmup_steps: int = Field(default=5, ge=0)
    beta1: float = Field(default=0.9, gt=0, lt=1)
    beta2: float = Field(default=0.98, gt=0, lt=1)
    eps: float = Field(default=1e-6, gt=0)
    seed: int = Field(default=0, description="Init of the global RNG and the batch order.")
    checkpoint_every: int = Field(default=20, ge=1, description="Steps between resumable checkpoints.")
    log_every: int = Field(default=10, ge=1)
    device: Device = "auto"
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads (None: torch's).")
    resume: bool = Field(default=True, description="Continue from out_dir's latest checkpoint if any.")
    dataset_roots: list[Path] = Field(
        default_factory=list,
        description="Links inside data_dir must not lead out of these (empty: no boundary); a service "
        "sets them from MARSBENCH_DATASET_ROOTS.",
    )

    @field_validator("data_dir", "out_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    def hyperparameters(self) -> dict[str, float | int | str]:
        """What decides the weights, given data and base model (recorded and hashed into the name)."""
        keys = (
            "steps", "batch_size", "lr", "weight_decay", "warmup_steps", "beta1", "beta2", "eps", "seed",
            "caption_key", "eval_split",
        )  # fmt: skip
        dumped = self.model_dump()
        return {key: dumped[key] for key in keys}


_T = TypeVar("_T")


def _given_or(value: _T | None, field: str) -> _T:
    """An option as given, else TrainConfig's default for it (the one place defaults live)."""
    if value is not None:
        return value
    default: _T = TrainConfig.model_fields[field].default
    return default


def training_config(
    options: TrainOptions,
    *,
    data_dir: Path,
    out_dir: Path,
    registry: Sequence[Path] = (),
    dataset_roots: Sequence[Path] = (),
) -> TrainConfig:
    """The run `options` describe (the CLI's flags or a `POST /v1/train` body); unset options take
    TrainConfig's defaults. Raises pydantic's ValidationError for values it refuses."""
    return TrainConfig(
        data_dir=data_dir, out_dir=out_dir, registry=list(registry), dataset_roots=list(dataset_roots),
        model=_given_or(options.model, "model"),
        caption_key=_given_or(options.caption_key, "caption_key"),
        eval_split=_given_or(options.eval_split, "eval_split"),
        steps=_given_or(options.steps, "steps"),
        batch_size=_given_or(options.batch_size, "batch_size"),
        lr=_given_or(options.lr, "lr"),
        warmup_steps=_given_or(options.warmup_steps, "warmup_steps"),
        seed=_given_or(options.seed, "seed"),
        checkpoint_every=_given_or(options.checkpoint_every, "checkpoint_every"),
        threads=options.threads,
        device=_given_or(options.device, "device"),
        resume=_given_or(options.resume, "resume"),
    )  # fmt: skip


class SplitInfo(BaseModel):
    rule: str = Field(description="How a sample is assigned to the held-out split.")
    fraction: float
    train_pairs: int
    heldout_pairs: int
    heldout_dir: str = Field(description="Paired dataset folder of the held-out samples (written here).")
    heldout_fingerprint: str = Field(description="The paired reader's fingerprint of heldout_dir.")
    train_keys_sha256: str = Field(description="sha256 over the sorted training sample keys.")


class DataInfo(BaseModel):
    path: str
    caption_key: str
    fingerprint: str = Field(description="The paired reader's fingerprint of the source folder.")
    skipped: int = Field(description="Samples the reader skipped (no image, no caption, duplicates).")
    split: SplitInfo


class CheckpointInfo(BaseModel):
    path: str
    sha256: str
    bytes: int


class TrainingRecord(BaseModel):
    """`<out>/training.json`: everything that reproduces and identifies a fine-tuning run."""

    model_config = ConfigDict(extra="allow")

    version: int = 1
    name: str = Field(description="Registered name of the result, `<base>-ft-<8 hex of the weights>`.")
    base_model: str
    base_source: str
    base_weights_sha256: dict[str, str] = Field(default_factory=dict)
    data: DataInfo
    hyperparameters: dict[str, float | int | str]
    steps: int = Field(description="Steps completed.")
    resumed_from_step: int | None = None
    world_size: int = 1
    device: str
    precision: str
    checkpoint: CheckpointInfo
    resume_checkpoint: str = Field(description="The full training checkpoint (weights + optimizer).")
    registry_file: str
    losses: list[float] = Field(description="Training loss per step (from step 1).")
    lrs: list[float] = Field(default_factory=list, description="Learning rate per step.")
    heldout_before: dict[str, float] = Field(default_factory=dict, description="In-process held-out metrics.")
    heldout_after: dict[str, float] = Field(default_factory=dict)
    loss_curve: str | None = None
    started_at: str
    finished_at: str
    duration_s: float
    software: dict[str, str | None] = Field(default_factory=dict)

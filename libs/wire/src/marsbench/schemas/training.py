"""Trainer wire schemas: `POST /v1/train`, `GET /v1/train/{id}` (and the list, and cancel).

`TrainOptions` are the options of `marsbench train` (the CLI builds the same model from its flags):
a field left out (null) takes the trainer's default (`marsbench.training.config.TrainConfig`, listed
in docs/training.md), so the defaults live in one place. `TrainJobCreate` adds what a request must
name: the paired dataset folder (under MARSBENCH_DATASET_ROOTS when set) and the output folder's
name, a single folder under the trainer's MARSBENCH_TRAIN_DIR (a request never names a path to write).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from marsbench.schemas.common import MAX_PATH_CHARS, MAX_REF_CHARS, DatasetDir, StrictModel
from marsbench.schemas.jobs import JobState

# One folder name under the trainer's output root: no separators, no `..`, no leading dot.
OUTPUT_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,127}$"
MAX_REGISTRY_FILES = 16

TrainDevice = Literal["auto", "cpu", "cuda"]


class TrainOptions(StrictModel):
    """The options of one fine-tuning run, as `marsbench train` takes them (null: the default)."""

    model: str | None = Field(
        default=None, min_length=1, max_length=MAX_REF_CHARS, description="Base model (open_clip family)."
    )
    steps: int | None = Field(default=None, ge=1, description="Optimiser steps in all.")
    batch_size: int | None = Field(default=None, ge=2, description="Global batch (split across processes).")
    lr: float | None = Field(default=None, gt=0, description="Peak learning rate.")
    warmup_steps: int | None = Field(default=None, ge=0, description="Linear learning-rate warm-up steps.")
    eval_split: float | None = Field(
        default=None, ge=0.0, lt=1.0, description="Share of samples held out, by a hash of the key."
    )
    caption_key: str | None = Field(default=None, min_length=1, max_length=100, description="Caption field.")
    seed: int | None = Field(default=None, description="Init of the global RNG and the batch order.")
    checkpoint_every: int | None = Field(default=None, ge=1, description="Steps between checkpoints.")
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads per process.")
    device: TrainDevice | None = Field(default=None, description="auto, cpu or cuda.")
    resume: bool | None = Field(
        default=None, description="Continue from the output folder's latest checkpoint (default true)."
    )
    nproc: int = Field(
        default=1,
        ge=1,
        description="Training processes (torchrun, DDP); the batch is split across them. 1: one process.",
    )


class TrainJobCreate(TrainOptions):
    """`POST /v1/train`: a fine-tuning run of `model` on the paired shards of `dataset_dir`."""

    dataset_dir: DatasetDir = Field(
        description="Folder of paired WebDataset shards, as the trainer sees it; under "
        "MARSBENCH_DATASET_ROOTS when set (403 otherwise)."
    )
    out: str | None = Field(
        default=None,
        pattern=OUTPUT_NAME,
        description="Output folder name under the trainer's MARSBENCH_TRAIN_DIR (default: the job id). "
        "Naming the folder of an earlier job resumes from its checkpoint.",
    )
    registry: list[DatasetDir] = Field(
        default_factory=list,
        max_length=MAX_REGISTRY_FILES,
        description="Extra model registry files (under MARSBENCH_DATASET_ROOTS when set).",
    )


class CurvePoint(BaseModel):
    step: int
    loss: float
    lr: float


class TrainOutputs(BaseModel):
    """What a finished run wrote (paths as the trainer sees them)."""

    name: str = Field(description="The fine-tuned model's registered name, `<base>-ft-<8 hex>`.")
    out_dir: str
    checkpoint: str = Field(description="The fine-tuned weights (`<name>.pt`), loadable as `<base>@<file>`.")
    checkpoint_sha256: str
    record: str = Field(description="The training record (training.json).")
    registry_file: str = Field(description="A registry entry for the model (MARSBENCH_ENCODER_REGISTRY).")
    heldout_dir: str = Field(description="The held-out split as a paired dataset (never trained on).")
    loss_curve: str | None = None
    resumed_from_step: int | None = None
    world_size: int = 1


class TrainJobStatus(BaseModel):
    id: str
    state: JobState
    request: TrainJobCreate = Field(description="The job as accepted (dataset_dir resolved).")
    out_dir: str = Field(max_length=MAX_PATH_CHARS)
    step: int = Field(default=0, description="Steps completed (a resumed run starts at its checkpoint's).")
    total: int | None = Field(default=None, description="Steps in all.")
    loss: float | None = Field(default=None, description="Loss of the last completed step.")
    curve: list[CurvePoint] = Field(
        default_factory=list,
        description="Loss and learning rate per step so far (from step 1 once the run has finished; "
        "while a resumed run trains, from the step it resumed at).",
    )
    rate: float | None = Field(default=None, description="Steps per second over this run.")
    eta_s: float | None = Field(default=None, description="Seconds left at that rate.")
    outputs: TrainOutputs | None = Field(default=None, description="Set once the run has succeeded.")
    error: str | None = Field(default=None, description="Why the job failed.")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class TrainJobList(BaseModel):
    data: list[TrainJobStatus]

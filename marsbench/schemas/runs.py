"""Evaluator wire schemas: run requests and run records (also the JSON files on disk)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from marsbench.schemas.common import StrictModel
from marsbench.schemas.jobs import TaskName

RUN_RECORD_VERSION = 1


class RunCreate(StrictModel):
    task: TaskName
    model: str
    dataset_dir: str = Field(description="The dataset the collection was indexed from.")
    max_k: int | None = Field(default=None, ge=1, description="Ranking cut-off; None ranks everything.")


class RunRecord(BaseModel):
    """One evaluation; saved as `<results_dir>/<id>.json`."""

    version: int = RUN_RECORD_VERSION
    id: str
    task: TaskName
    model: str
    dataset_dir: str
    collection: str
    variant: str = Field(description="Which metric variant produced `metrics` (e.g. 'parity').")
    metrics: dict[str, float] = Field(description="Fractions in 0..1.")
    per_class: dict[str, dict[str, float]] = Field(default_factory=dict)
    chance: dict[str, float] = Field(
        default_factory=dict, description="The same metrics for a random ranking (mean of seeded shuffles)."
    )
    settings: dict[str, object] = Field(default_factory=dict, description="Query settings and prompts.")
    counts: dict[str, int] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    indexing: dict[str, object] | None = Field(
        default=None, description="The indexing job behind the collection: id, skipped items."
    )
    created_at: datetime
    duration_s: float


class RunList(BaseModel):
    data: list[RunRecord]

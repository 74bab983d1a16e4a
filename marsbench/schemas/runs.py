"""Evaluator wire schemas: run requests and run records (also the JSON files on disk)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field, model_validator

from marsbench.schemas.common import MAX_PATH_CHARS, MAX_REF_CHARS, StrictModel
from marsbench.schemas.jobs import TaskName

RUN_RECORD_VERSION = 1


class QueryMode(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    HYBRID = "hybrid"


class RunCreate(StrictModel):
    task: TaskName
    model: str = Field(max_length=MAX_REF_CHARS)
    dataset_dir: str = Field(
        max_length=MAX_PATH_CHARS,
        description="The dataset the collection was indexed from; under MARSBENCH_DATASET_ROOTS when set.",
    )
    max_k: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Landform: ranking cut-off; None ranks everything."
    )
    caption_key: str | None = Field(
        default=None, max_length=100, description="Paired: the caption field (refined_caption)."
    )
    top_lists: bool = Field(
        default=False, description="Paired: keep each query's top-10 list as an artifact."
    )
    landform: str | None = Field(
        default=None, max_length=100, description="Geo-localization: the landform to find."
    )
    query_mode: QueryMode | None = Field(default=None, description="Geo-localization: text, image or hybrid.")
    top_k: int = Field(default=20_000, ge=1, le=1_000_000, description="Geo: tiles retrieved (exact search).")
    radius_deg: float = Field(default=0.5, gt=0, le=10, description="Geo: hit radius in degrees.")
    mix_ratio: float = Field(default=0.3, ge=0, le=1, description="Geo hybrid: weight of the image part.")
    temperature: float = Field(default=0.1, gt=0, description="Geo hybrid: softmax temperature.")
    force: bool = Field(
        default=False,
        description="Evaluate even when the collection's indexing job has not succeeded (running, "
        "failed, or paused); the record then says so (`forced`, `indexing`). Without it such a run "
        "is refused with 409 and the job's progress.",
    )
    instruction: str | None = Field(
        default=None,
        max_length=2000,
        description="Instruction for the text queries of models that take one (GME, Qwen3-VL-Embedding, "
        "...); default: the model's own, as the reference uses it. Recorded in the run record.",
    )

    @model_validator(mode="after")
    def _task_fields(self) -> RunCreate:
        if self.task is TaskName.GEOLOCALIZATION and (self.landform is None or self.query_mode is None):
            raise ValueError("a geolocalization run needs 'landform' and 'query_mode'")
        if self.caption_key is not None and self.task is not TaskName.PAIRED:
            raise ValueError("'caption_key' applies to the paired task only")
        return self

    def dataset_options(self) -> dict[str, str]:
        return {"caption_key": self.caption_key} if self.caption_key else {}


class Curve(BaseModel):
    """A curve sampled at points: the `x` values and one or more series of the same length."""

    x_label: str = Field(description="What `x` holds, e.g. 'k' (a rank cut-off).")
    x: list[float]
    y: dict[str, list[float]] = Field(description="Series by name, e.g. 'precision', 'recall'.")


class RunRecord(BaseModel):
    """One evaluation; saved as `<results_dir>/<id>.json`."""

    version: int = RUN_RECORD_VERSION
    id: str
    task: TaskName
    model: str
    dataset_dir: str
    collection: str
    caption_key: str | None = None
    landform: str | None = None
    query_mode: QueryMode | None = None
    variant: str = Field(description="Which metric variant produced `metrics` (e.g. 'parity').")
    metrics: dict[str, float] = Field(description="Fractions in 0..1 (geo `k` is a rank).")
    variants: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Every metric variant computed, by name; `metrics` is `variants[variant]`.",
    )
    artifacts: dict[str, str] = Field(
        default_factory=dict, description="Files beside the record, e.g. the geo map PNG, by role."
    )
    per_class: dict[str, dict[str, float]] = Field(default_factory=dict)
    curves: dict[str, Curve] = Field(
        default_factory=dict,
        description="Curves for plots, parity variant: paired 'i2t_recall_at_k' / 't2i_recall_at_k' "
        "(x: k, y: recall); geo 'pr' (x: k, y: precision and recall).",
    )
    chance: dict[str, float] = Field(
        default_factory=dict, description="The same metrics for a random ranking (mean of seeded shuffles)."
    )
    settings: dict[str, object] = Field(default_factory=dict, description="Query settings and prompts.")
    counts: dict[str, int] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    skipped: int | None = Field(default=None, description="Items skipped while indexing (see `indexing`).")
    indexing: dict[str, object] | None = Field(
        default=None,
        description="The indexing job behind the collection: id, state, progress, skipped items.",
    )
    forced: bool = Field(
        default=False,
        description="Evaluated with force=true although the collection's indexing had not succeeded "
        "(see `indexing` for how far it had got): not comparable with complete runs.",
    )
    created_at: datetime
    duration_s: float


class RunList(BaseModel):
    data: list[RunRecord]

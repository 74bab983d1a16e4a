"""Evaluator wire schemas: run requests and run records (also the JSON files on disk).

The record's JSON schema is committed as docs/run-record.schema.json and documented in
docs/run-records.md; regenerate the schema with `python -m marsbench.schemas.runs` after changing
a record model (a test fails until it matches).

Record versions: 1 had no `provenance`, `curves` or `forced`; 2 adds them. Older records load with
those fields at their defaults. Fields this version does not know (a newer marsbench's) are kept,
so reading and re-saving a record loses nothing, and a record newer than this code warns once.
"""

from __future__ import annotations

import json
import sys
import warnings
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from marsbench.schemas.common import MAX_REF_CHARS, DatasetDir, StrictModel
from marsbench.schemas.jobs import TaskName
from marsbench.schemas.provenance import Provenance

RUN_RECORD_VERSION = 2
SCHEMA_PATH = "docs/run-record.schema.json"


class NewerRecordWarning(UserWarning):
    """A run record written by a newer marsbench: fields this version does not know are kept as is."""


class QueryMode(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    HYBRID = "hybrid"


class RunCreate(StrictModel):
    task: TaskName
    model: str = Field(max_length=MAX_REF_CHARS)
    dataset_dir: DatasetDir = Field(
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

    model_config = ConfigDict(extra="allow")

    x_label: str = Field(description="What `x` holds, e.g. 'k' (a rank cut-off).")
    x: list[float]
    y: dict[str, list[float]] = Field(description="Series by name, e.g. 'precision', 'recall'.")


class RunRecord(BaseModel):
    """One evaluation; saved as `<results_dir>/<id>.json` (docs/run-records.md describes every field)."""

    model_config = ConfigDict(extra="allow", title="RunRecord")

    version: int = Field(
        default=RUN_RECORD_VERSION,
        description="Record format: 1 (no provenance, curves or forced), 2 (this schema).",
    )
    id: str
    task: TaskName
    model: str
    dataset_dir: str
    collection: str
    caption_key: str | None = None
    landform: str | None = None
    query_mode: QueryMode | None = None
    variant: str = Field(
        description="Which metric variant produced `metrics` ('parity': the reference's procedure)."
    )
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
        "(x: about 40 log-spaced k from 1 to the number of pairs, with 1, 5 and 10; y: recall); geo "
        "'pr' (x: the parity k grid plus log-spaced k below it, at most 300, best-F1 k and last k "
        "included; y: precision and recall).",
    )
    chance: dict[str, float] = Field(
        default_factory=dict, description="The same metrics for a random ranking (mean of seeded shuffles)."
    )
    settings: dict[str, object] = Field(
        default_factory=dict,
        description="Query settings and prompts: the task's (templates, prompts, query images, k, "
        "radius, mixing, tie and order rules) and `model_prompts`, the model's default prompts and "
        "any query instruction the request set.",
    )
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
    provenance: Provenance | None = Field(
        default=None,
        description="What reproduces the run: request, model and weights, dataset fingerprint, "
        "software, git commit, hardware, timings per phase. None in version 1 records.",
    )
    created_at: datetime
    duration_s: float = Field(
        description="Seconds the task's evaluation took (provenance.timings: per phase)."
    )

    @field_validator("version")
    @classmethod
    def _warn_if_newer(cls, version: int) -> int:
        if version > RUN_RECORD_VERSION:
            warnings.warn(
                f"run record version {version} is newer than this marsbench's ({RUN_RECORD_VERSION}): "
                "fields it does not know are kept as they are, unread",
                NewerRecordWarning,
                stacklevel=2,
            )
        return version


class RunList(BaseModel):
    data: list[RunRecord]


def run_record_json_schema() -> str:
    """The JSON schema of run records, as committed in docs/run-record.schema.json."""
    schema = RunRecord.model_json_schema()
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # python -m marsbench.schemas.runs > docs/run-record.schema.json
    sys.stdout.write(run_record_json_schema())

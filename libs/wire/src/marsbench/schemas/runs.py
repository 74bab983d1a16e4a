"""Evaluator wire schemas: run requests and run records (also the JSON files on disk).

The record's JSON schema is committed as docs/run-record.schema.json and documented in
docs/run-records.md; regenerate the schema with `python -m marsbench.schemas.runs` after changing
a record model (a test fails until it matches).

Record versions: 1 had no `provenance`, `curves` or `forced`; 2 adds them. Older records load with
those fields at their defaults. Fields this version does not know (a newer marsbench's) are kept,
so reading and re-saving a record loses nothing, and a record newer than this code warns once.

`settings` is the section of the record's task (`LandformSettings`, `PairedSettings`,
`GeoSettings`), told apart by its `task`. Records written while `settings` was an untyped dict
have no `settings.task`: it is taken from the record's own `task` when they load, and a field they
lack reads as None (or empty).

The geo-localization request defaults are written here, once, because the request schema needs them
and the wire package depends on nothing else; code imports them from `marsbench.tasks.geo`.
"""

from __future__ import annotations

import json
import sys
import warnings
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from marsbench.schemas.common import MAX_REF_CHARS, DatasetDir, StrictModel
from marsbench.schemas.jobs import TaskName
from marsbench.schemas.provenance import Provenance

RUN_RECORD_VERSION = 2
SCHEMA_PATH = "docs/run-record.schema.json"

# The reference's geo-localization defaults (its eval_max_k, radius, hybrid mix and temperature).
GEO_DEFAULT_TOP_K = 20_000
GEO_DEFAULT_RADIUS_DEG = 0.5
GEO_DEFAULT_MIX_RATIO = 0.3
GEO_DEFAULT_TEMPERATURE = 0.1


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
    top_k: int = Field(
        default=GEO_DEFAULT_TOP_K, ge=1, le=1_000_000, description="Geo: tiles retrieved (exact search)."
    )
    radius_deg: float = Field(
        default=GEO_DEFAULT_RADIUS_DEG, gt=0, le=10, description="Geo: hit radius in degrees."
    )
    mix_ratio: float = Field(
        default=GEO_DEFAULT_MIX_RATIO, ge=0, le=1, description="Geo hybrid: weight of the image part."
    )
    temperature: float = Field(
        default=GEO_DEFAULT_TEMPERATURE, gt=0, description="Geo hybrid: softmax temperature."
    )
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


class TaskSettings(BaseModel):
    """What every task's `settings` section holds: its task and the prompts behind the vectors.

    Every run writes all of its section's fields; they default to None (or empty) because records
    written while `settings` was an untyped dict may lack any of them.
    """

    # Unknown fields (a newer marsbench's) are kept, as the record keeps them.
    model_config = ConfigDict(extra="allow")

    task: TaskName = Field(description="The task this section belongs to: the record's `task`.")
    model_prompts: dict[str, str] = Field(
        default_factory=dict,
        description="The model's default prompts/instructions from its card, plus `query_instruction` "
        "when the request set one.",
    )


class LandformSettings(TaskSettings):
    """Landform retrieval's query settings."""

    task: Literal[TaskName.LANDFORM] = TaskName.LANDFORM
    templates: list[str] = Field(default_factory=list, description="The prompt templates of each class.")
    max_k: int | None = Field(default=None, description="The ranking cut-off; None ranks every image.")
    tie_rule: str | None = Field(default=None, description="How equal scores are ordered.")


class PairedSettings(TaskSettings):
    """Paired image-text retrieval's settings."""

    task: Literal[TaskName.PAIRED] = TaskName.PAIRED
    tie_rule: str | None = Field(default=None, description="How a partner tied with other items ranks.")
    similarity: str | None = Field(default=None, description="The score of an image-text pair.")


class GeoSettings(TaskSettings):
    """Geo-localization's query settings."""

    task: Literal[TaskName.GEOLOCALIZATION] = TaskName.GEOLOCALIZATION
    top_k: int | None = Field(default=None, description="Tiles retrieved (exact search).")
    radius_deg: float | None = Field(default=None, description="Hit radius in degrees.")
    distance: dict[str, str] = Field(
        default_factory=dict,
        description="The distance each metric variant measures the radius in, by variant.",
    )
    mix_ratio: float | None = Field(default=None, description="Hybrid queries: weight of the image part.")
    temperature: float | None = Field(default=None, description="Hybrid queries: softmax temperature.")
    prompts: list[str] = Field(default_factory=list, description="The text prompts embedded (text, hybrid).")
    query_images: list[str] = Field(
        default_factory=list, description="The query image files embedded (image, hybrid)."
    )
    order_rule: str | None = Field(default=None, description="How the retrieved tiles are ordered.")


def _untagged_sections_allowed(schema: dict[str, Any]) -> None:
    """Records written before typed settings have no `settings.task`, and each section accepts
    theirs: in the JSON schema the sections are alternatives (anyOf), not exclusive ones (oneOf)."""
    if "oneOf" in schema:
        schema["anyOf"] = schema.pop("oneOf")
    schema.pop("discriminator", None)


# A record's `settings`: the section of its task.
RunSettings = LandformSettings | PairedSettings | GeoSettings


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
    settings: RunSettings = Field(
        discriminator="task",
        json_schema_extra=_untagged_sections_allowed,
        description="Query settings and prompts: the section of the record's task (its `task`), with "
        "the task's templates, prompts, query images, k, radius, mixing, tie and order rules, and "
        "`model_prompts`, the model's default prompts and any query instruction the request set.",
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

    @model_validator(mode="before")
    @classmethod
    def _settings_of_the_records_task(cls, data: object) -> object:
        """A record written while `settings` was an untyped dict (or had none) gets the section of
        its own task: the section names the task it belongs to, the record says it."""
        if not isinstance(data, dict):
            return data
        settings = data.get("settings", {})
        if isinstance(settings, dict) and "task" not in settings:
            return {**data, "settings": {**settings, "task": data.get("task")}}
        return data

    @model_validator(mode="after")
    def _settings_match_the_task(self) -> RunRecord:
        if self.settings.task is not self.task:
            raise ValueError(f"settings of a {self.settings.task.value} run in a {self.task.value} record")
        return self


class RunList(BaseModel):
    data: list[RunRecord]


def run_record_json_schema() -> str:
    """The JSON schema of run records, as committed in docs/run-record.schema.json."""
    schema = RunRecord.model_json_schema()
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # python -m marsbench.schemas.runs > docs/run-record.schema.json
    sys.stdout.write(run_record_json_schema())

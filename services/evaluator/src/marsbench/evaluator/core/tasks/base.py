"""What every task's evaluation shares: the run it works in, the result it returns, its interface.

`TaskEvaluation.evaluate(context, request)` evaluates one run of its task and returns that task's
result: the record's task-specific sections (metrics and their variants, the random baseline,
curves, artifacts, notes, counts and the typed `settings` section). `RunService` adds what every
record shares (identity, indexing state, provenance, the model's prompts) and writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from marsbench.evaluator.core.ports import QueryEncoder
from marsbench.evaluator.core.timing import PhaseTimer
from marsbench.evaluator.core.warm_index import WarmIndexCache
from marsbench.schemas.jobs import TaskName
from marsbench.schemas.runs import Curve, QueryMode, RunCreate, RunSettings
from marsbench.store import VectorStore

# The metric variant behind a record's `metrics`: the reference's procedure.
PARITY = "parity"


@dataclass(frozen=True)
class RunContext:
    """What a task's evaluation works with: the services' ports, the collection, where the run's
    artifacts go and the timer of its phases."""

    store: VectorStore
    encoder: QueryEncoder
    collection: str
    run_id: str
    runs_dir: Path  # artifacts are written beside the record, named `<run_id>.<role>...`
    timer: PhaseTimer = field(default_factory=PhaseTimer)
    warm: WarmIndexCache | None = None
    roots: tuple[Path, ...] = ()  # dataset roots: readers refuse links leading out of them


@dataclass(frozen=True, kw_only=True)
class TaskResult:
    """The task-specific sections of a run record; each task narrows `settings` to its section."""

    settings: RunSettings
    metrics: dict[str, float]
    variants: dict[str, dict[str, float]]
    counts: dict[str, int]
    chance: dict[str, float] = field(default_factory=dict)
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    curves: dict[str, Curve] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # The record fields that tell runs of the task apart (None where the task has none).
    caption_key: str | None = None
    landform: str | None = None
    query_mode: QueryMode | None = None

    @property
    def query_images(self) -> list[str]:
        """The dataset's query image files the run embedded (their digests go into provenance)."""
        return []


Result_co = TypeVar("Result_co", bound=TaskResult, covariant=True)


class TaskEvaluation(Protocol[Result_co]):
    """One task's evaluation. Raises `InvalidRun` for a run it cannot evaluate and lets the store's
    `CollectionNotFound` through (the caller says how to index the collection)."""

    @property
    def task(self) -> TaskName: ...

    def evaluate(self, context: RunContext, request: RunCreate) -> Result_co: ...

"""The evaluation of each task, one module per task, all through one interface (`TaskEvaluation`).

Which half lives where: a task's facts (what it indexes, its payload, its defaults, the queries that
need no service) are in the shared library, marsbench.tasks.<task>, which the indexer reads too and
which must never import the evaluator (an import-linter contract). Evaluating a run needs the
evaluator's ports (the encoder), the store and its metrics, so it lives here: `evaluate(context,
request)` returns the task's result, the record's task-specific sections with its typed settings.
`TASKS` is what `RunService` dispatches through.
"""

from __future__ import annotations

from collections.abc import Mapping

from marsbench.evaluator.core.tasks.base import PARITY, RunContext, TaskEvaluation, TaskResult
from marsbench.evaluator.core.tasks.geo import GeoEvaluation, GeoResult
from marsbench.evaluator.core.tasks.landform import LandformEvaluation, LandformResult
from marsbench.evaluator.core.tasks.paired import PairedEvaluation, PairedResult
from marsbench.schemas.jobs import TaskName

_EVALUATIONS: tuple[TaskEvaluation[TaskResult], ...] = (
    LandformEvaluation(),
    PairedEvaluation(),
    GeoEvaluation(),
)
TASKS: Mapping[TaskName, TaskEvaluation[TaskResult]] = {
    evaluation.task: evaluation for evaluation in _EVALUATIONS
}

__all__ = [
    "PARITY",
    "TASKS",
    "GeoEvaluation",
    "GeoResult",
    "LandformEvaluation",
    "LandformResult",
    "PairedEvaluation",
    "PairedResult",
    "RunContext",
    "TaskEvaluation",
    "TaskResult",
]

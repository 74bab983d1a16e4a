"""Evaluator domain errors; `marsbench.evaluator.api.errors` maps them to statuses.

EvaluatorError
├── RunNotFound     404
├── NotIndexed      409  the collection for (task, model, data) does not exist yet
├── IncompleteIndex 409  its indexing job has not succeeded (detail: the job's progress)
└── InvalidRun      422  the request cannot be evaluated (the message says why)
"""

from __future__ import annotations


class EvaluatorError(Exception):
    pass


class RunNotFound(EvaluatorError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r}; GET /v1/runs lists them")


class NotIndexed(EvaluatorError):
    pass


class InvalidRun(EvaluatorError):
    pass


class IncompleteIndex(EvaluatorError):
    def __init__(self, message: str, detail: dict[str, object]) -> None:
        super().__init__(message)
        self.detail = detail

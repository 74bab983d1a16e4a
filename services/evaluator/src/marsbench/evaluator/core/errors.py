"""Evaluator domain errors; `marsbench.evaluator.api.errors` maps them to statuses.

EvaluatorError
├── RunNotFound      404
├── PointNotFound    404  no such collection or point, or the dataset no longer holds its image
├── NotIndexed       404  no such collection: the one named, or the one for (task, model, data)
├── IncompleteIndex  409  its indexing job has not succeeded (detail: the job's progress)
├── ImageUnavailable 409  a point's image cannot be read: no indexer or job names its dataset, or
│                         the dataset cannot be opened or decoded
└── InvalidRun       422  the request cannot be evaluated (the message says why)
"""

from __future__ import annotations


class EvaluatorError(Exception):
    pass


class RunNotFound(EvaluatorError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r}; GET /v1/runs lists them")


class PointNotFound(EvaluatorError):
    pass


class NotIndexed(EvaluatorError):
    pass


class ImageUnavailable(EvaluatorError):
    pass


class InvalidRun(EvaluatorError):
    pass


class IncompleteIndex(EvaluatorError):
    def __init__(self, message: str, detail: dict[str, object]) -> None:
        super().__init__(message)
        self.detail = detail

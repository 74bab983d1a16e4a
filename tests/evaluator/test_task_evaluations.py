"""Every task is evaluated through the one interface `RunService` dispatches on (issue 16)."""

from __future__ import annotations

from typing import get_type_hints

from marsbench.evaluator.core.tasks import TASKS, GeoResult, LandformResult, PairedResult
from marsbench.schemas.jobs import TaskName
from marsbench.schemas.runs import GeoSettings, LandformSettings, PairedSettings


def test_each_task_has_one_evaluation_under_its_own_name() -> None:
    assert set(TASKS) == set(TaskName)
    assert all(evaluation.task is name for name, evaluation in TASKS.items())


def test_each_result_holds_its_tasks_settings_section() -> None:
    expected = {LandformResult: LandformSettings, PairedResult: PairedSettings, GeoResult: GeoSettings}
    assert {result: get_type_hints(result)["settings"] for result in expected} == expected
    assert {LandformSettings().task, PairedSettings().task, GeoSettings().task} == set(TaskName)

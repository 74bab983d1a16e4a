"""Image-only models take part in image queries only: which runs and jobs a model can serve."""

from __future__ import annotations

from pathlib import Path

import pytest

from marsbench.evaluator.core.errors import InvalidRun
from marsbench.evaluator.core.runs import RunService
from marsbench.indexer.core.jobs import JobManager
from marsbench.schemas.common import Modality
from marsbench.schemas.jobs import JobCreate, JobState, TaskName
from marsbench.schemas.runs import QueryMode, RunCreate
from marsbench.store import EmbeddedStore
from marsbench.tasks.modalities import indexing_needs, missing_modalities, query_needs, servable_modes
from tests.fakes import FakeEncoder

IMAGE = Modality.IMAGE
TEXT = Modality.TEXT


@pytest.mark.parametrize(
    ("task", "mode", "needs"),
    [
        (TaskName.LANDFORM, None, {TEXT}),
        (TaskName.PAIRED, None, {IMAGE, TEXT}),
        (TaskName.GEOLOCALIZATION, QueryMode.TEXT, {TEXT}),
        (TaskName.GEOLOCALIZATION, QueryMode.IMAGE, {IMAGE}),
        (TaskName.GEOLOCALIZATION, QueryMode.HYBRID, {IMAGE, TEXT}),
    ],
)
def test_query_needs(task: TaskName, mode: QueryMode | None, needs: set[Modality]) -> None:
    assert query_needs(task, mode) == needs


def test_only_paired_indexing_embeds_text() -> None:
    assert indexing_needs(TaskName.PAIRED) == {IMAGE, TEXT}
    assert indexing_needs(TaskName.GEOLOCALIZATION) == indexing_needs(TaskName.LANDFORM) == {IMAGE}


def test_image_only_models_are_routed_to_image_queries() -> None:
    assert servable_modes([IMAGE], list(QueryMode)) == [QueryMode.IMAGE]
    assert servable_modes([IMAGE, TEXT], list(QueryMode)) == list(QueryMode)
    assert missing_modalities({IMAGE, TEXT}, [IMAGE]) == [TEXT]


@pytest.mark.parametrize(
    ("task", "mode"),
    [(TaskName.LANDFORM, None), (TaskName.PAIRED, None), (TaskName.GEOLOCALIZATION, QueryMode.HYBRID)],
)
def test_the_evaluator_refuses_text_runs_of_an_image_only_model_before_any_work(
    store: EmbeddedStore, tmp_path: Path, task: TaskName, mode: QueryMode | None
) -> None:
    runs = RunService(store, FakeEncoder(modalities=[IMAGE]), tmp_path / "runs")
    geo = {"landform": "crater", "query_mode": mode} if mode else {}
    # The dataset folder does not even exist: the modality check comes first and says why.
    request = RunCreate(task=task, model="dino", dataset_dir=str(tmp_path / "absent"), **geo)
    with pytest.raises(InvalidRun, match=r"'dino' does not embed text.*image queries only"):
        runs.create(request)


def test_the_evaluator_lets_image_queries_of_an_image_only_model_through(
    store: EmbeddedStore, tmp_path: Path
) -> None:
    runs = RunService(store, FakeEncoder(modalities=[IMAGE]), tmp_path / "runs")
    request = RunCreate(
        task=TaskName.GEOLOCALIZATION, model="dino", dataset_dir=str(tmp_path / "absent"),
        landform="crater", query_mode=QueryMode.IMAGE,
    )  # fmt: skip
    with pytest.raises(InvalidRun, match="does not exist"):  # past the modality check, to the data
        runs.create(request)


def test_the_indexer_refuses_paired_data_for_an_image_only_model(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path
) -> None:
    jobs = JobManager(store, FakeEncoder(modalities=[IMAGE]), tmp_path / "jobs", batch_size=4, in_flight=2)
    landform = jobs.wait(jobs.submit(JobCreate(task=TaskName.LANDFORM, model="dino",
                                               dataset_dir=str(landform_folders))).id, 30)  # fmt: skip
    assert landform.state is JobState.SUCCEEDED, landform.error
    paired_dir = tmp_path / "paired"
    paired_dir.mkdir()
    (paired_dir / "part-000.tar").write_bytes(b"")
    paired = jobs.wait(
        jobs.submit(JobCreate(task=TaskName.PAIRED, model="dino", dataset_dir=str(paired_dir))).id, 30
    )
    assert paired.state is JobState.FAILED
    assert "does not embed text" in (paired.error or "")

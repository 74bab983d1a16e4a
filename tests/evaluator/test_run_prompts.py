"""Runs pass text-query instructions through and record the prompts behind their vectors."""

from __future__ import annotations

from pathlib import Path

import pytest

from marsbench.evaluator.core.runs import RunService
from marsbench.indexer.core.jobs import JobManager
from marsbench.schemas.jobs import JobCreate, JobState, TaskName
from marsbench.schemas.models import ModelInfo
from marsbench.schemas.runs import RunCreate
from marsbench.store import EmbeddedStore
from marsbench.tasks.landform import PROMPT_TEMPLATES
from tests.fakes import FakeEncoder


class InstructedEncoder(FakeEncoder):
    """A fake MLLM whose card lists default instructions."""

    def model_info(self, model: str, *, load: bool = True) -> ModelInfo:
        card = super().model_info(model, load=load)
        return card.model_copy(
            update={"prompts": {"text_instruction": "Find an image that matches the given text."}}
        )


@pytest.fixture
def indexed(tmp_path: Path, landform_folders: Path):
    encoder = InstructedEncoder()
    with EmbeddedStore(tmp_path / "qdrant") as store:
        jobs = JobManager(store, encoder, tmp_path / "jobs", batch_size=4, in_flight=2)
        job = jobs.wait(
            jobs.submit(JobCreate(task=TaskName.LANDFORM, model="m", dataset_dir=str(landform_folders))).id,
            30,
        )
        assert job.state is JobState.SUCCEEDED, job.error
        yield RunService(store, encoder, tmp_path / "runs"), encoder, landform_folders


def test_each_class_is_one_request_of_its_three_prompts(indexed) -> None:
    runs, encoder, dataset = indexed
    record = runs.create(RunCreate(task=TaskName.LANDFORM, model="m", dataset_dir=str(dataset)))
    assert [len(texts) for texts, _ in encoder.text_calls] == [len(PROMPT_TEMPLATES)] * record.counts[
        "classes"
    ]
    assert all(instruction is None for _, instruction in encoder.text_calls)
    assert record.settings.model_prompts == {"text_instruction": "Find an image that matches the given text."}


def test_an_instruction_reaches_the_encoder_changes_the_result_and_is_recorded(indexed) -> None:
    runs, encoder, dataset = indexed
    plain = runs.create(RunCreate(task=TaskName.LANDFORM, model="m", dataset_dir=str(dataset)))
    encoder.text_calls.clear()
    instructed = runs.create(
        RunCreate(
            task=TaskName.LANDFORM, model="m", dataset_dir=str(dataset), instruction="Find Mars terrain."
        )
    )
    assert {instruction for _, instruction in encoder.text_calls} == {"Find Mars terrain."}
    assert instructed.settings.model_prompts["query_instruction"] == "Find Mars terrain."
    assert instructed.metrics != plain.metrics or instructed.per_class != plain.per_class

"""Run records carry what reproduces them (issue 10, item 1): a real RunService over an embedded
store, collections indexed by a real JobManager from the synthetic datasets, the fake encoder.

Also: version-1 records still load, newer records keep what they add, and the committed JSON
schema matches the models.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from marsbench.datasets.synth import GEO_LANDFORMS, SynthSummary, synthesize
from marsbench.evaluator.core.provenance import PACKAGES, folder_size, git_state
from marsbench.evaluator.core.runs import RunService
from marsbench.indexer.core.jobs import JobManager
from marsbench.schemas.jobs import JobCreate, JobState, TaskName
from marsbench.schemas.runs import (
    RUN_RECORD_VERSION,
    SCHEMA_PATH,
    GeoSettings,
    LandformSettings,
    NewerRecordWarning,
    PairedSettings,
    QueryMode,
    RunCreate,
    RunRecord,
    run_record_json_schema,
)
from marsbench.store import EmbeddedStore
from marsbench.tasks import INDEXABLE
from tests.evaluator.test_incomplete_index import InProcessJobs
from tests.fakes import FakeEncoder

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
LANDFORM = next(iter(GEO_LANDFORMS))


@dataclass
class Stack:
    data: SynthSummary
    store: EmbeddedStore
    jobs: JobManager
    runs: RunService
    tmp: Path

    def dataset(self, task: TaskName) -> Path:
        if task is TaskName.LANDFORM:
            assert self.data.landform is not None
            return self.data.landform.parquet_dir
        if task is TaskName.PAIRED:
            assert self.data.paired is not None
            return self.data.paired.dataset_dir
        assert self.data.geo is not None
        return self.data.geo.dataset_dir

    def service(self, encoder: FakeEncoder) -> RunService:
        return RunService(self.store, encoder, self.tmp / "other-runs", indexing=InProcessJobs(self.jobs))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("provenance")
    data = synthesize(tmp / "data", scale="small")
    encoder = FakeEncoder()
    with EmbeddedStore(tmp / "qdrant") as store:
        jobs = JobManager(store, encoder, tmp / "jobs", batch_size=64, in_flight=2)
        runs = RunService(store, encoder, tmp / "runs", indexing=InProcessJobs(jobs))
        built = Stack(data, store, jobs, runs, tmp)
        for task in TaskName:
            job = jobs.submit(JobCreate(task=task, model="m", dataset_dir=str(built.dataset(task))))
            assert jobs.wait(job.id, 120).state is JobState.SUCCEEDED
        yield built


def run(stack: Stack, task: TaskName, **fields: object) -> RunRecord:
    return stack.runs.create(RunCreate(task=task, model="m", dataset_dir=str(stack.dataset(task)), **fields))


def geo_fields(mode: QueryMode = QueryMode.HYBRID) -> dict[str, object]:
    return {"landform": LANDFORM, "query_mode": mode, "top_k": 500}


ALL_TASKS = [(TaskName.LANDFORM, {}), (TaskName.PAIRED, {}), (TaskName.GEOLOCALIZATION, geo_fields())]


@pytest.mark.parametrize(("task", "fields"), ALL_TASKS, ids=lambda v: getattr(v, "value", ""))
def test_every_record_carries_its_provenance(stack: Stack, task: TaskName, fields: dict[str, object]) -> None:
    record = run(stack, task, **fields)
    assert record.version == RUN_RECORD_VERSION == 2
    provenance = record.provenance
    assert provenance is not None
    # The request as received: posting it again reruns the same evaluation.
    assert RunCreate.model_validate(provenance.request) == RunCreate(
        task=task, model="m", dataset_dir=str(stack.dataset(task)), **fields
    )
    # The model: the card's facts, and the weights behind both the queries and the collection.
    assert (provenance.model.reference, provenance.model.family) == ("m", "fake")
    assert provenance.model.weights == provenance.model.indexed_weights == "fake-weights-1"
    # The preprocessing and precision behind the query vectors and behind the collection's.
    assert provenance.model.preprocessing == provenance.model.indexed_preprocessing == "fake decode"
    assert provenance.model.precision == provenance.model.indexed_precision == "fp32"
    # The data: the reader's own fingerprint, and what the folder holds.
    dataset = stack.dataset(task)
    reader = INDEXABLE[task.value].open(dataset, {})
    assert provenance.dataset.fingerprint == reader.fingerprint()
    assert provenance.dataset.path == str(dataset.resolve())
    files = [p for p in dataset.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert (provenance.dataset.files, provenance.dataset.total_bytes) == (
        len(files),
        sum(p.stat().st_size for p in files),
    )
    # Software and hardware.
    software = provenance.software
    assert software.python and software.marsbench
    assert set(software.packages) == set(PACKAGES)
    assert software.packages["numpy"] == np.__version__ and software.packages["pydantic"]
    assert provenance.hardware.evaluator.cores and provenance.hardware.evaluator.platform
    # Timings: non-overlapping phases inside the total; the indexing job's wall time.
    timings = provenance.timings
    assert all(seconds >= 0 for seconds in timings.phases.values())
    assert sum(timings.phases.values()) <= timings.total_s
    assert {"open_dataset", "metrics", "provenance"} <= set(timings.phases)
    assert timings.indexing_s is not None and timings.indexing_s >= 0
    # What the file holds is what the service returned.
    saved = RunRecord.model_validate_json((stack.tmp / "runs" / f"{record.id}.json").read_text())
    assert saved == record


def test_phases_follow_what_each_task_does(stack: Stack) -> None:
    landform = run(stack, TaskName.LANDFORM).provenance
    with_lists = run(stack, TaskName.PAIRED, top_lists=True)
    paired = with_lists.provenance
    # The top-list artifact beside the record is JSON too, and no record.
    assert with_lists.id in {record.id for record in stack.runs.list()}
    geo = run(stack, TaskName.GEOLOCALIZATION, **geo_fields()).provenance
    assert landform and paired and geo
    assert {"embed_queries", "search", "metrics"} <= set(landform.timings.phases)
    # Paired queries are the stored vectors: nothing is embedded; search fetches the top lists.
    assert "embed_queries" not in paired.timings.phases
    assert {"read_collection", "metrics", "curves", "search"} <= set(paired.timings.phases)
    assert {"embed_queries", "search", "metrics", "curves", "figures"} <= set(geo.timings.phases)


def test_records_keep_curves_that_agree_with_their_metrics(stack: Stack) -> None:
    paired = run(stack, TaskName.PAIRED)
    for direction in ("i2t", "t2i"):
        curve = paired.curves[f"{direction}_recall_at_k"]
        recall = dict(zip(curve.x, curve.y["recall"], strict=True))
        assert recall[1.0] == paired.metrics[f"{direction}_r1"]
        assert recall[10.0] == paired.metrics[f"{direction}_r10"]
        assert curve.x[-1] == paired.counts["pairs"]
    geo = run(stack, TaskName.GEOLOCALIZATION, **geo_fields())
    pr = geo.curves["pr"]
    at = pr.x.index(geo.metrics["k"])
    assert (pr.y["precision"][at], pr.y["recall"][at]) == (geo.metrics["precision"], geo.metrics["recall"])
    assert pr.x[-1] == min(500, geo.counts["retrieved"])
    assert run(stack, TaskName.LANDFORM).curves == {}


def test_geo_records_hash_the_ground_truth_and_the_query_images_they_used(stack: Stack) -> None:
    dataset = stack.dataset(TaskName.GEOLOCALIZATION)
    text = run(stack, TaskName.GEOLOCALIZATION, **geo_fields(QueryMode.TEXT)).provenance
    image = run(stack, TaskName.GEOLOCALIZATION, **geo_fields(QueryMode.IMAGE))
    assert text and image.provenance
    truth = f"ground_truth/{LANDFORM}.csv"
    assert text.dataset.sha256 == {truth: hashlib.sha256((dataset / truth).read_bytes()).hexdigest()}
    assert isinstance(image.settings, GeoSettings)
    queries = {f"image_queries/{LANDFORM}/{name}" for name in image.settings.query_images}
    assert queries and set(image.provenance.dataset.sha256) == {truth, *queries}
    for name, digest in image.provenance.dataset.sha256.items():
        assert digest == hashlib.sha256((dataset / name).read_bytes()).hexdigest()


def test_the_paired_fingerprint_covers_the_caption_key(stack: Stack) -> None:
    dataset = stack.dataset(TaskName.PAIRED)
    record = run(stack, TaskName.PAIRED, caption_key="refined_caption")
    assert record.provenance is not None
    assert record.provenance.dataset.options == {"caption_key": "refined_caption"}
    reader = INDEXABLE["paired"].open(dataset, {"caption_key": "refined_caption"})
    assert record.provenance.dataset.fingerprint == reader.fingerprint()


def test_the_git_commit_is_the_checkouts_head(stack: Stack) -> None:
    record = run(stack, TaskName.LANDFORM)
    assert record.provenance is not None
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not run from a git checkout")
    assert record.provenance.software.git_commit == head
    assert record.provenance.software.git_dirty is not None


def test_a_folder_outside_any_checkout_has_no_commit(tmp_path: Path) -> None:
    (tmp_path / "__init__.py").write_text("")
    assert git_state(tmp_path) == (None, None)


def test_other_weights_at_query_time_are_noted(stack: Stack) -> None:
    runs = stack.service(FakeEncoder(weights="fake-weights-2"))
    dataset = stack.dataset(TaskName.LANDFORM)
    record = runs.create(RunCreate(task=TaskName.LANDFORM, model="m", dataset_dir=str(dataset)))
    assert record.provenance is not None
    assert (record.provenance.model.weights, record.provenance.model.indexed_weights) == (
        "fake-weights-2",
        "fake-weights-1",
    )
    assert any("differs from the one the collection was indexed with" in note for note in record.notes)


def test_folder_size_leaves_out_hidden_entries(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"12345")
    (tmp_path / "y.csv").write_bytes(b"123")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "big").write_bytes(b"0" * 100)
    (tmp_path / ".lock").write_bytes(b"0")
    assert folder_size(tmp_path) == (2, 8)


# ----------------------------------------------------------------------------- record versions


def test_a_version_1_record_still_loads() -> None:
    record = RunRecord.model_validate_json((FIXTURES / "run-record-v1.json").read_text())
    assert record.version == 1
    assert record.provenance is None and record.curves == {} and record.forced is False
    assert record.metrics["mAP"] == 0.4123 and record.indexing and record.indexing["state"] == "succeeded"


UNTYPED_SETTINGS = FIXTURES / "run-records-untyped-settings.json"  # written before typed settings
SECTIONS = {
    TaskName.LANDFORM: LandformSettings,
    TaskName.PAIRED: PairedSettings,
    TaskName.GEOLOCALIZATION: GeoSettings,
}


def test_records_written_with_untyped_settings_load_into_their_tasks_section() -> None:
    old = json.loads(UNTYPED_SETTINGS.read_text())
    assert [data["task"] for data in old] == ["landform", "paired", "geolocalization"]
    for data in old:
        assert "task" not in data["settings"]
        record = RunRecord.model_validate(data)
        assert type(record.settings) is SECTIONS[record.task] and record.settings.task is record.task
        # Every field the untyped dict held is read, with its value; re-saved, it is written back.
        assert record.settings.model_dump(mode="json", exclude={"task"}) == data["settings"]
        assert json.loads(record.model_dump_json())["settings"] == {**data["settings"], "task": data["task"]}
    landform, _, geo = (RunRecord.model_validate(data).settings for data in old)
    assert isinstance(landform, LandformSettings) and landform.max_k == 50 and len(landform.templates) == 3
    assert isinstance(geo, GeoSettings) and geo.top_k == 500 and geo.query_images
    assert geo.model_prompts == {"query_instruction": "Find Mars terrain."}
    # The version-1 record, and one that kept only some settings (or none): the rest reads as None.
    v1 = RunRecord.model_validate_json((FIXTURES / "run-record-v1.json").read_text()).settings
    assert isinstance(v1, LandformSettings) and v1.tie_rule and v1.max_k is None
    partial = RunRecord.model_validate(old[2] | {"settings": {"top_k": 20_000, "radius_deg": 0.5}}).settings
    assert isinstance(partial, GeoSettings) and (partial.top_k, partial.order_rule, partial.prompts) == (
        20_000,
        None,
        [],
    )
    assert isinstance(
        RunRecord.model_validate({k: v for k, v in old[1].items() if k != "settings"}).settings,
        PairedSettings,
    )


def test_the_settings_of_another_task_are_refused() -> None:
    landform, _, geo = json.loads(UNTYPED_SETTINGS.read_text())
    with pytest.raises(ValueError, match="settings of a geolocalization run in a landform record"):
        RunRecord.model_validate(landform | {"settings": geo["settings"] | {"task": "geolocalization"}})


@pytest.mark.parametrize(("task", "fields"), ALL_TASKS, ids=lambda v: getattr(v, "value", ""))
def test_fresh_records_keep_the_settings_fields_records_had_before(
    stack: Stack, task: TaskName, fields: dict[str, object]
) -> None:
    """The JSON the API returns keeps every settings field of before, and adds the section's task."""
    before = next(data for data in json.loads(UNTYPED_SETTINGS.read_text()) if data["task"] == task.value)
    record = json.loads(run(stack, task, **fields).model_dump_json())
    assert (
        set(record["settings"]) == {*before["settings"], "task"} and record["settings"]["task"] == task.value
    )
    assert set(record) == set(before)


def test_a_newer_record_warns_and_keeps_what_it_adds() -> None:
    data = json.loads((FIXTURES / "run-record-v1.json").read_text())
    data |= {"version": RUN_RECORD_VERSION + 1, "energy_kwh": 0.5}
    with pytest.warns(NewerRecordWarning, match="newer than this marsbench"):
        record = RunRecord.model_validate(data)
    # Re-saved (as the CLI copies records), the newer field survives.
    assert json.loads(record.model_dump_json())["energy_kwh"] == 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RunRecord.model_validate(json.loads((FIXTURES / "run-record-v1.json").read_text()))


def test_the_committed_json_schema_matches_the_models() -> None:
    committed = (REPO / SCHEMA_PATH).read_text() if (REPO / SCHEMA_PATH).is_file() else ""
    assert committed == run_record_json_schema(), (
        f"{SCHEMA_PATH} is out of date; regenerate it with "
        f"`.venv/bin/python -m marsbench.schemas.runs > {SCHEMA_PATH}` and describe new fields in "
        "docs/run-records.md"
    )


def test_the_v1_fixture_and_a_fresh_record_validate_against_the_schema(stack: Stack) -> None:
    jsonschema_rs = pytest.importorskip("jsonschema_rs")  # schemathesis's validator (a test extra)
    validator = jsonschema_rs.validator_for(json.loads(run_record_json_schema()))
    validator.validate(json.loads((FIXTURES / "run-record-v1.json").read_text()))
    for old in json.loads(UNTYPED_SETTINGS.read_text()):
        validator.validate(old)
    record = run(stack, TaskName.GEOLOCALIZATION, **geo_fields())
    validator.validate(json.loads(record.model_dump_json()))
    with pytest.raises(jsonschema_rs.ValidationError):
        validator.validate(json.loads(record.model_dump_json()) | {"task": "captioning"})


def test_a_geo_record_states_the_radius_it_was_computed_with(stack: Stack) -> None:
    """Every distance variant of the record names the radius of the request, not the default."""
    record = run(stack, TaskName.GEOLOCALIZATION, **geo_fields(QueryMode.TEXT), radius_deg=1.25)
    settings = record.settings
    assert isinstance(settings, GeoSettings)
    assert settings.radius_deg == 1.25
    assert settings.distance["exact_great_circle"] == "great circle, 1.25 deg of arc on Mars"
    default = run(stack, TaskName.GEOLOCALIZATION, **geo_fields(QueryMode.TEXT)).settings
    assert isinstance(default, GeoSettings)
    assert default.distance["exact_great_circle"] == "great circle, 0.5 deg of arc on Mars"


def test_queries_embedded_with_other_preprocessing_than_the_collection_get_a_note(stack: Stack) -> None:
    other = stack.service(FakeEncoder(preprocessing="another backend"))
    record = other.create(
        RunCreate(task=TaskName.LANDFORM, model="m", dataset_dir=str(stack.dataset(TaskName.LANDFORM)))
    )
    assert record.provenance is not None and record.provenance.model.preprocessing == "another backend"
    assert any("image preprocessing 'another backend'" in note for note in record.notes)

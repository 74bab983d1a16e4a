"""`marsbench benchmark`: config parsing and refusals, the pure grid planning and leaderboards, and
the demo grid end to end against a local stack (run, then rerun skipping every finished run)."""

from __future__ import annotations

import csv
import io
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from marsbench.cli.benchmark import (
    PlannedRun,
    RunKey,
    finished_records,
    plan_grid,
    record_key,
    request_key,
    split_done,
)
from marsbench.cli.benchmark_config import BenchmarkConfig, ConfigError, load_config
from marsbench.cli.leaderboard import leaderboards
from marsbench.cli.main import main
from marsbench.encoder.registry import registered_specs
from marsbench.schemas.common import Modality
from marsbench.schemas.jobs import TaskName
from marsbench.schemas.runs import GeoSettings, QueryMode, RunRecord
from marsbench.tasks.geo import DEFAULT_MIX_RATIO, DEFAULT_RADIUS_DEG, DEFAULT_TOP_K

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
BOTH = [Modality.IMAGE, Modality.TEXT]


def write(tmp_path: Path, text: str, name: str = "bench.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def config_of(data: dict[str, object]) -> BenchmarkConfig:
    return BenchmarkConfig.model_validate(data)


# -- config ---------------------------------------------------------------------------------------


def test_example_configs_parse() -> None:
    demo = load_config(CONFIGS / "demo.yaml")
    assert demo.tasks() == list(TaskName)
    assert [entry.reference() for entry in demo.models] == ["marsbench-tiny"]
    assert demo.dataset(TaskName.GEOLOCALIZATION) == REPO / ".marsbench" / "demo-data" / "geo" / "dataset"
    assert demo.out == REPO / ".marsbench" / "benchmark-demo"

    paper = load_config(CONFIGS / "paper.yaml")
    assert paper.tasks() == list(TaskName)
    assert {entry.model for entry in paper.models} == set(registered_specs()) - {"marsbench-tiny"}
    assert len(paper.models) == 16
    [marscope] = [entry for entry in paper.models if entry.model == "marscope"]
    assert marscope.reference() == "marscope@/data/checkpoints/marscope.pt"
    assert paper.paired.caption_keys == ["refined_caption"]
    assert paper.geolocalization.modes() == list(QueryMode)
    assert len(paper.geolocalization.landforms) == 5
    assert all(str(path).startswith("/data/") for path in paper.datasets.model_dump().values())


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = write(
        tmp_path / "conf",
        "out: ../results\n"
        "datasets: {landform: ../data/landform}\n"
        "models:\n  - open_clip:ViT-B-32\n  - {model: marscope, checkpoint: ckpt/m.pt, label: MarScope}\n",
    )
    config = load_config(path)
    assert config.out == tmp_path / "results"
    assert config.dataset(TaskName.LANDFORM) == tmp_path / "data" / "landform"
    assert config.tasks() == [TaskName.LANDFORM]
    assert [entry.reference() for entry in config.models] == [
        "open_clip:ViT-B-32",
        f"marscope@{tmp_path / 'conf' / 'ckpt' / 'm.pt'}",
    ]
    assert [entry.name() for entry in config.models] == ["open_clip:ViT-B-32", "MarScope"]
    # Defaults are the evaluator's.
    assert (config.geolocalization.top_k, config.geolocalization.mix_ratio) == (
        DEFAULT_TOP_K,
        DEFAULT_MIX_RATIO,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "datasets: {landform: /d}\nmodels: [m]\nmodel: [x]\n",
            r"unknown key 'model' \(allowed: datasets, models",
        ),
        (
            "datasets: {landform: /d}\nmodels: [m]\ngeolocalization: {query_mode: [text]}\n",
            r"unknown key 'query_mode' in geolocalization \(allowed: landforms, query_modes",
        ),
        (
            "datasets: {landform: /d, geo: /g}\nmodels: [m]\n",
            r"unknown key 'geo' in datasets \(allowed: paired, landform, geolocalization\)",
        ),
        (
            "datasets: {landform: /d}\nmodels: [m, {model: n, chekpoint: /c.pt}]\n",
            r"unknown key 'chekpoint' in models\[1\] \(allowed: model, checkpoint, label\)",
        ),
        ("datasets: {landform: /d}\nmodels: [m]\nmodels: [n]\n", r"duplicate key 'models'"),
        ("datasets: {landform: /d}\nmodels: []\n", r"models: List should have at least 1 item"),
        ("datasets: {}\nmodels: [m]\n", r"'datasets' names no task"),
        ("models: [m]\n", r"datasets: Field required"),
        ("datasets: {landform: /d}\nmodels: [m, m]\n", r"models repeat \['m'\]"),
        (
            "datasets: {landform: /d}\nmodels: [{model: 'a@/x.pt', checkpoint: /y.pt}]\n",
            r"already names a checkpoint",
        ),
        (
            "datasets: {paired: /d}\nmodels: [m]\npaired: {caption_keys: [refined]}\n",
            r"paired.caption_keys: unknown caption key\(s\) \['refined'\]",
        ),
        (
            "datasets: {geolocalization: /d}\nmodels: [m]\ngeolocalization: {query_modes: [text, photo]}\n",
            r"geolocalization.query_modes",
        ),
        (
            "datasets: {geolocalization: /d}\nmodels: [m]\ngeolocalization: {top_k: 0}\n",
            r"geolocalization.top_k: Input should be greater than or equal to 1",
        ),
        ("- just\n- a list\n", r"expected a mapping"),
        ("datasets: [unclosed\n", r"is not valid YAML"),
    ],
)
def test_config_refusals_name_the_key_and_the_file(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=expected) as caught:
        load_config(path)
    assert str(path) in str(caught.value)


def test_cli_reports_a_bad_config_in_one_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "datasets: {landform: /d}\nmodels: [m]\ntop_k: 5\n")
    assert main(["benchmark", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'top_k'" in err and str(path) in err and "Traceback" not in err
    assert main(["benchmark", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read benchmark config" in capsys.readouterr().err


def test_running_services_need_an_encoder_url_for_the_model_cards(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MARSBENCH_ENCODER_URL", raising=False)
    urls = ["--indexer-url", "http://127.0.0.1:9", "--evaluator-url", "http://127.0.0.1:9"]
    assert main(["benchmark", "--config", str(CONFIGS / "demo.yaml"), *urls]) == 2
    assert "give --encoder-url too" in capsys.readouterr().err


# -- planning ------------------------------------------------------------------------------------


def grid_config(**sections: object) -> BenchmarkConfig:
    return config_of(
        {
            "datasets": {"paired": "/d/paired", "landform": "/d/landform", "geolocalization": "/d/geo"},
            "models": ["clip", "dino", {"model": "marscope", "checkpoint": "/c/m.pt"}],
            **sections,
        }
    )


MODALITIES = {"clip": BOTH, "dino": [Modality.IMAGE], "marscope@/c/m.pt": BOTH}


def test_plan_is_the_cross_product_with_image_only_models_routed_to_image_queries() -> None:
    config = grid_config(
        paired={"caption_keys": ["refined_caption", "ori_caption"]},
        geolocalization={"landforms": ["yardangs", "landslides"], "query_modes": "all"},
    )
    plan = plan_grid(config, modalities=MODALITIES)
    by_task = {task: [run for run in plan.runs if run.key.task is task] for task in TaskName}
    both = ["clip", "marscope@/c/m.pt"]
    assert [(r.key.model, r.key.caption_key) for r in by_task[TaskName.PAIRED]] == [
        (model, key) for model in both for key in ("refined_caption", "ori_caption")
    ]
    assert [r.key.model for r in by_task[TaskName.LANDFORM]] == both
    geo = [(r.key.model, r.key.landform, r.key.query_mode) for r in by_task[TaskName.GEOLOCALIZATION]]
    assert geo == [
        (model, landform, mode)
        for model in ("clip", "dino", "marscope@/c/m.pt")
        for landform in ("yardangs", "landslides")
        for mode in (list(QueryMode) if model != "dino" else [QueryMode.IMAGE])
    ]
    assert len(plan.runs) == 4 + 2 + 2 * 3 + 2 * 1 + 2 * 3
    [note] = plan.not_applicable
    assert note.startswith("dino does not embed text")
    assert "paired" in note and "landform" in note and "text queries" in note and "hybrid" in note
    assert "image-only models take part in geo-localization image queries only" in note
    # Labels name rows; the reference (with the checkpoint) identifies runs.
    assert {run.label for run in plan.runs} == {"clip", "dino", "marscope@m.pt"}
    request = by_task[TaskName.GEOLOCALIZATION][0].request
    assert (request.top_k, request.radius_deg, request.dataset_dir) == (
        DEFAULT_TOP_K,
        DEFAULT_RADIUS_DEG,
        "/d/geo",
    )


def test_plan_uses_the_datasets_landforms_for_all_and_leaves_out_unknown_models() -> None:
    config = grid_config(geolocalization={"query_modes": ["image"]})
    plan = plan_grid(config, modalities={"dino": [Modality.IMAGE]}, geo_landforms=["a", "b", "c"])
    assert [(r.key.task, r.key.landform) for r in plan.runs] == [
        (TaskName.GEOLOCALIZATION, landform) for landform in "abc"
    ]
    assert plan.models == ("dino",)


def test_only_options_that_change_the_numbers_identify_a_run() -> None:
    base = {"geolocalization": {"landforms": ["yardangs"], "query_modes": "all"}}
    plan = plan_grid(grid_config(**base), modalities={"clip": BOTH})
    other_mix = plan_grid(
        grid_config(geolocalization={**base["geolocalization"], "mix_ratio": 0.5}), modalities={"clip": BOTH}
    )
    keys = {run.key for run in plan.runs}
    changed = {run.key.query_mode for run in other_mix.runs if run.key not in keys}
    assert changed == {QueryMode.HYBRID}  # text and image queries ignore the hybrid weights
    top_lists = plan_grid(grid_config(paired={"top_lists": True}), modalities={"clip": BOTH})
    paired = [run for run in plan.runs if run.key.task is TaskName.PAIRED]
    assert [run.key for run in top_lists.runs if run.key.task is TaskName.PAIRED] == [r.key for r in paired]
    landform = plan_grid(grid_config(landform={"max_k": 100}), modalities={"clip": BOTH})
    assert landform.runs[1].key != plan.runs[1].key and landform.runs[1].key.task is TaskName.LANDFORM


def record_for(run: PlannedRun, *, created: datetime | None = None, **metrics: float) -> RunRecord:
    """A record as the evaluator writes it for this run's request."""
    request = run.request
    settings: dict[str, object] = {"model_prompts": {}}
    if request.task is TaskName.LANDFORM:
        settings |= {"max_k": request.max_k, "templates": ["a photo of {}"]}
    elif request.task is TaskName.GEOLOCALIZATION:
        settings |= request.model_dump(include={"top_k", "radius_deg", "mix_ratio", "temperature"})
    return RunRecord(
        id=f"run-{abs(hash(run.key))}",
        task=request.task,
        model=request.model,
        dataset_dir=request.dataset_dir,
        collection="c",
        caption_key=request.caption_key,
        landform=request.landform,
        query_mode=request.query_mode,
        variant="parity",
        metrics=metrics,
        variants={"parity": metrics},
        settings=settings,
        created_at=created or datetime.now(UTC),
        duration_s=1.0,
    )


def test_a_record_identifies_the_run_that_made_it_and_finished_runs_are_skipped() -> None:
    plan = plan_grid(grid_config(geolocalization={"landforms": ["yardangs"]}), modalities=MODALITIES)
    for run in plan.runs:
        assert record_key(record_for(run)) == request_key(run.request) == run.key
    done = {run.key for run in plan.runs[::2]}
    todo, finished = split_done(plan.runs, done)
    assert [run.key for run in finished] == [run.key for run in plan.runs[::2]]
    assert [run.key for run in todo] == [run.key for run in plan.runs[1::2]]
    # A record made with other options, or another instruction, is another run.
    geo = next(run for run in plan.runs if run.key.task is TaskName.GEOLOCALIZATION)
    other = record_for(geo)
    assert isinstance(other.settings, GeoSettings)
    other.settings.top_k = 100
    assert record_key(other) != geo.key
    instructed = record_for(geo)
    instructed.settings.model_prompts = {"query_instruction": "Find Mars images."}
    assert record_key(instructed) != geo.key


def test_finished_records_reads_only_records_and_keeps_the_newest(tmp_path: Path) -> None:
    plan = plan_grid(grid_config(), modalities={"clip": BOTH}, geo_landforms=["yardangs"])
    landform = next(run for run in plan.runs if run.key.task is TaskName.LANDFORM)
    old = record_for(landform, created=datetime.now(UTC) - timedelta(days=1), mAP=0.1)
    new = record_for(landform, mAP=0.2).model_copy(update={"id": "newer"})
    (tmp_path / "a.json").write_text(old.model_dump_json())
    (tmp_path / "b.json").write_text(new.model_dump_json())
    (tmp_path / "paired-x.top10.json").write_text('{"q": ["a", "b"]}')  # an artifact, not a record
    (tmp_path / ".c.json.123.tmp").write_text("{half a rec")  # an interrupted atomic write
    (tmp_path / "broken.json").write_text("{")
    found = finished_records(tmp_path)
    assert list(found) == [landform.key] and found[landform.key].id == "newer"


# -- leaderboards --------------------------------------------------------------------------------


def test_leaderboards_mark_the_best_per_column_and_show_missing_runs() -> None:
    config = grid_config(geolocalization={"landforms": ["yardangs", "landslides"], "query_modes": "all"})
    plan = plan_grid(config, modalities=MODALITIES)
    records: dict[RunKey, RunRecord] = {}
    for i, run in enumerate(plan.runs):
        if (run.label, run.key.landform) == ("marscope@m.pt", "landslides"):
            continue  # a failed run: no record
        metrics = {
            TaskName.LANDFORM: {"mAP": 0.1 * (i + 1), "r_precision": 0.5, "ndcg@10": 0.5, "hit@10": 1.0},
            TaskName.PAIRED: {
                f"{d}_{m}": v
                for d in ("i2t", "t2i")
                for m, v in (("r1", 0.1 * i), ("r10", 0.5), ("medr", 10.0 - i), ("mrr", 0.3))
            },
            TaskName.GEOLOCALIZATION: {"f1": 0.01 * i, "precision": 0.5, "recall": 0.5, "k": 8, "auprc": 0.2},
        }[run.key.task]
        records[run.key] = record_for(run, **metrics)
    paired, landform, geo = leaderboards(plan.runs, records)
    assert paired.task is TaskName.PAIRED and landform.task is TaskName.LANDFORM

    text = landform.text().splitlines()
    assert [line.split()[0] for line in text[2:]] == ["clip", "marscope@m.pt"]
    assert text[3].split()[1].endswith("*") and not text[2].split()[1].endswith("*")
    assert "*" in text[2].split()[2] and "*" in text[3].split()[2]  # ties are all marked

    # MedR: lower is better, shown as a rank.
    medr = [row[1][2] for row in paired.rows]
    assert paired.best()[2] == {medr.index(min(medr))}
    assert f"**{min(medr):g}**" in paired.markdown()

    rows = dict(geo.rows)
    assert list(rows) == [
        (label, mode.value) for label in ("clip", "dino", "marscope@m.pt") for mode in QueryMode
        if label != "dino" or mode is QueryMode.IMAGE
    ]  # fmt: skip
    incomplete = rows[("marscope@m.pt", "text")]
    assert incomplete[1] is None and incomplete[-2:] == [None, None]  # no mean over a missing landform
    assert "| marscope@m.pt | text | " in geo.markdown() and " - |" in geo.markdown()
    complete = rows[("clip", "text")]
    assert complete[2] == pytest.approx((complete[0] + complete[1]) / 2)

    table = list(csv.reader(io.StringIO(geo.csv())))
    assert table[0] == ["model", "query", "yardangs_f1", "landslides_f1", "mean_f1", "mean_auprc"]
    assert len(table) == 1 + 7 and table[-1][3] == ""


# -- end to end ----------------------------------------------------------------------------------


@pytest.mark.e2e
def test_demo_grid_runs_then_a_rerun_skips_every_finished_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from marsbench.datasets.synth import synthesize

    # The shipped demo config, where its relative paths find the synthetic data.
    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "demo.yaml"
    shutil.copy(CONFIGS / "demo.yaml", config)
    synthesize(tmp_path / ".marsbench" / "demo-data", scale="small", seed=0)
    out = tmp_path / ".marsbench" / "benchmark-demo"
    argv = ["benchmark", "--config", str(config), "--data-dir", str(tmp_path / "store")]

    assert main([*argv, "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert dry.count("would run: ") == 17 and not list(out.glob("*.json"))

    started = time.perf_counter()
    assert main(argv) == 0
    first = capsys.readouterr().out
    first_s = time.perf_counter() - started
    records = sorted(out.glob("*.json"))
    assert len(records) == 17, first
    assert "to run: 17" in first and "[17/17]" in first and "0 failed" in first

    for name, rows in (("paired", 1), ("landform", 1), ("geolocalization", 3)):
        table = list(csv.reader((out / f"leaderboard-{name}.csv").open()))
        assert len(table) == 1 + rows and all(row[0] == "marsbench-tiny" for row in table[1:])
        assert all(cell for row in table[1:] for cell in row), f"{name}: a run without a record"
    geo = list(csv.reader((out / "leaderboard-geolocalization.csv").open()))
    assert [row[1] for row in geo[1:]] == ["text", "image", "hybrid"] and len(geo[0]) == 2 + 5 + 2
    markdown = (out / "leaderboard.md").read_text()
    for title in ("## Paired image-text retrieval", "## Landform retrieval", "## Global geo-localization"):
        assert title in markdown
    mtimes = {path: path.stat().st_mtime_ns for path in records}
    # And as a report page with its figures, from the same records (17 runs, 3 curve figures).
    assert first.rstrip().endswith(f"report: {out / 'report' / 'index.html'}")
    figures = {path.name for path in (out / "report" / "figures").glob("*.png")}
    assert {"paired-recall-at-k.png", "landform-ap-per-class.png", "geo-pr-yardangs.png"} <= figures

    started = time.perf_counter()
    assert main(argv) == 0
    second = capsys.readouterr().out
    with capsys.disabled():
        print(f"\ndemo grid: {first_s:.1f} s, rerun: {time.perf_counter() - started:.1f} s")
    assert "finished earlier, skipped: 17; to run: 0" in second
    assert "indexing" not in second and "[1/" not in second
    assert {path: path.stat().st_mtime_ns for path in sorted(out.glob("*.json"))} == mtimes
    assert "marsbench-tiny" in second.split("Landform retrieval", 1)[1]

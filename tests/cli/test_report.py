"""`marsbench report`: records found recursively, the newest per run, leaderboards in Markdown, CSV
and one offline HTML page with figures; bad files named, never fatal."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from PIL import Image
from report_fixtures import MARSCOPE, Results, write_results

from marsbench.cli.leaderboard import FORCED_MARK, BoardEntry, build_boards
from marsbench.cli.main import main
from marsbench.cli.report import WrittenReport, generate_report
from marsbench.cli.report.collect import Unreadable, collect, model_labels, read_record
from marsbench.schemas.jobs import TaskName
from marsbench.schemas.runs import RunRecord

MARSCOPE_LABEL = "marscope@marscope.pt"


@pytest.fixture(scope="module")
def report_results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    return write_results(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def written(
    report_results: Results, tmp_path_factory: pytest.TempPathFactory
) -> tuple[WrittenReport, list[str]]:
    warnings: list[str] = []
    out = tmp_path_factory.mktemp("report")
    return generate_report(report_results.root, out, warn=warnings.append), warnings


def section(markdown: str, title: str) -> str:
    """The Markdown from a `## title` heading to the next one."""
    return markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of the first table in `markdown`, header and alignment rows left out."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[start + 2 : end]]


# -- records -------------------------------------------------------------------------------------


def test_collect_keeps_the_newest_record_per_run_and_names_bad_files(report_results: Results) -> None:
    collected = collect(report_results.root)
    ids = {item.record.id for item in collected.records}
    assert report_results.superseded_id not in ids and "paired-clip-new" in ids
    assert len(ids) == 2 + 2 + 6 and collected.superseded_total == 1
    assert {problem.path for problem in collected.unreadable} == {
        report_results.corrupt,
        report_results.invalid,
    }
    # notes.json, list.json: passed over silently; the top list and the .tmp are never read.
    assert collected.not_records == 2
    # Rows in the paper's task order; the version-1 record reads with no curves and not forced.
    assert collected.records[0].record.task is TaskName.PAIRED
    [v1] = [item.record for item in collected.records if item.record.version == 1]
    assert v1.curves == {} and v1.forced is False


def test_read_record_tells_records_bad_records_and_other_files_apart(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"task": "paired", "metrics": ')
    result = read_record(path)
    assert isinstance(result, Unreadable) and "not valid JSON" in result.reason
    path.write_text(json.dumps({"task": "paired", "metrics": {}, "model": "m"}))
    result = read_record(path)
    assert isinstance(result, Unreadable) and "not a valid run record" in result.reason
    for other in ('{"q": ["a"]}', "[]", "{", ""):
        path.write_text(other)
        assert read_record(path) is None


def test_model_labels_shorten_checkpoints_unless_two_would_look_alike() -> None:
    labels = model_labels(["clip", "m@/a/x.pt", "n@/a/y.pt", "n@/b/y.pt", "open_clip:ViT-B-32"])
    assert labels == {
        "clip": "clip",
        "m@/a/x.pt": "m@x.pt",
        "n@/a/y.pt": "n@/a/y.pt",
        "n@/b/y.pt": "n@/b/y.pt",
        "open_clip:ViT-B-32": "open_clip:ViT-B-32",
    }


def test_boards_track_forced_runs_only_when_asked() -> None:
    entries = [
        BoardEntry(TaskName.LANDFORM, "a", metrics={"mAP": 0.5}, forced=True),
        BoardEntry(TaskName.LANDFORM, "b", metrics={"mAP": 0.25}),
    ]
    [tracked] = build_boards(entries, track_forced=True)
    [plain] = build_boards(entries)
    assert f"| a {FORCED_MARK} | **50.00** |" in tracked.markdown()
    assert "| a | **50.00** |" in plain.markdown()
    assert tracked.csv().splitlines()[1].endswith(",true") and "forced" not in plain.csv()


# -- report.md -----------------------------------------------------------------------------------


def test_markdown_leaderboards_hold_the_newest_values_x100_with_the_best_in_bold(
    written: tuple[WrittenReport, list[str]],
) -> None:
    markdown = written[0].markdown.read_text()
    paired = table_rows(section(markdown, "Paired image-text retrieval"))
    assert paired == [
        ["clip", "refined_caption", "12.34", "50.00", "12", "20.00", "11.11", "45.00", "12", "18.00"],
        [MARSCOPE_LABEL, "refined_caption", "**23.45**", "**67.89**", "**5**", "**30.00**",
         *paired[1][6:]],
    ]  # fmt: skip
    assert all(cell.startswith("**") for cell in paired[1][2:])
    assert "99.99" not in markdown  # the superseded record

    landform = table_rows(section(markdown, "Landform retrieval"))
    assert landform == [
        ["clip", "38.00", "25.00", "**60.00**", "**90.00**"],  # ties are all bold
        [MARSCOPE_LABEL, "**60.80**", "**40.00**", "**60.00**", "**90.00**"],
    ]

    geo_md = section(markdown, "Global geo-localization")
    assert "| model | query | landslides F1 | yardangs F1 | mean F1 | mean AUPRC |" in geo_md
    assert table_rows(geo_md) == [
        ["clip", "text", "12.00", "10.00", "11.00", "6.00"],
        ["clip", "image", "**13.00**", "11.00", "**12.00**", "**7.00**"],
        [f"{MARSCOPE_LABEL} {FORCED_MARK}", "text", "-", "**34.56**", "-", "-"],
        [MARSCOPE_LABEL, "image", "-", "5.00", "-", "-"],
    ]


def test_markdown_notes_say_what_was_forced_superseded_left_out_and_which_variants_exist(
    written: tuple[WrittenReport, list[str]],
) -> None:
    markdown = written[0].markdown.read_text()
    paired = section(markdown, "Paired image-text retrieval")
    assert "1 older record(s) superseded by a newer record of the same run" in paired
    assert "clip refined_caption \u00d71" in paired
    assert "ties_optimistic (2 runs), ties_pessimistic (2 runs)" in paired
    assert "### Variant `ties_optimistic`" in paired and "### Variant `ties_pessimistic`" in paired
    assert "![Recall@k" in paired and "figures/paired-recall-at-k.png" in paired

    geo = section(markdown, "Global geo-localization")
    assert f"{FORCED_MARK} forced: evaluated on an incomplete index" in geo
    assert f"{MARSCOPE_LABEL} (yardangs, text) (indexing running)" in geo
    assert f"No curve in the record for: {MARSCOPE_LABEL} (yardangs, image) (version 1 records" in geo
    assert "### Variant `exact`" in geo and "### Variant `exact_great_circle`" in geo
    exact = table_rows(geo.split("### Variant `exact`\n", 1)[1])
    assert [row[:2] for row in exact] == [
        ["clip", "text"],
        ["clip", "image"],
        [f"{MARSCOPE_LABEL} {FORCED_MARK}", "text"],
    ]  # only the runs with that variant
    assert "Map not found beside its record" in geo and "geo-clip-landslides-text.map.png" in geo
    assert "- [yardangs \u00b7 text query \u00b7 clip](figures/" in geo

    assert "1 older record(s) superseded" in markdown.split("\n## ", 1)[0]  # in the summary too
    assert "## Unreadable record files" in markdown and "landform-broken.json" in markdown


def test_csv_leaderboards_hold_the_fractions_unmarked(written: tuple[WrittenReport, list[str]]) -> None:
    report = written[0]
    assert [path.name for path in report.csv] == [
        "leaderboard-paired.csv",
        "leaderboard-landform.csv",
        "leaderboard-geolocalization.csv",
    ]
    with report.csv[0].open(newline="") as file:
        paired = list(csv.DictReader(file))
    assert [row["model"] for row in paired] == ["clip", MARSCOPE_LABEL]
    assert float(paired[0]["i2t_r1"]) == 0.1234 and float(paired[1]["i2t_medr"]) == 5.0
    assert paired[0]["caption_key"] == "refined_caption"
    with report.csv[2].open(newline="") as file:
        geo = list(csv.DictReader(file))
    forced = [row for row in geo if row["forced"] == "true"]
    assert [(row["model"], row["query"]) for row in forced] == [(MARSCOPE_LABEL, "text")]
    assert float(forced[0]["yardangs_f1"]) == 0.3456 and forced[0]["mean_f1"] == ""
    assert not any("*" in cell or FORCED_MARK in cell for row in geo for cell in row.values())


# -- index.html ----------------------------------------------------------------------------------


def test_index_html_is_offline_and_every_figure_it_shows_is_a_real_png(
    written: tuple[WrittenReport, list[str]],
) -> None:
    report = written[0]
    page = report.index.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page)
    assert references
    assert not [ref for ref in references if "http://" in ref or "https://" in ref or ref.startswith("//")]
    assert "http://" not in page and "https://" not in page  # nothing fetched: no CDN, no fonts

    images = re.findall(r"""<img[^>]*\ssrc="([^"]+)\"""", page)
    assert len(images) == 1 + 1 + 2 + 1  # paired R@k, landform bars, geo PR x 2 landforms, 1 map
    for ref in references:
        if ref.startswith("#") or ref.startswith("data:"):
            continue
        target = report.index.parent / ref
        assert target.is_file(), ref
        if ref.endswith(".png"):
            with Image.open(target) as image:
                assert image.format == "PNG" and image.width >= 200 and image.height >= 150, ref
            assert target.stat().st_size > 2_000, ref
    assert "figures/geo-pr-yardangs.png" in images and "figures/landform-ap-per-class.png" in images


def test_index_html_shows_the_tables_with_the_best_marked_and_the_forced_run(
    written: tuple[WrittenReport, list[str]],
) -> None:
    page = written[0].index.read_text()
    for title in ("Paired image-text retrieval", "Landform retrieval", "Global geo-localization"):
        assert f"<h2>{title}</h2>" in page
    assert page.count("<table>") == 3 + 2 + 2  # parity per task, paired ties x 2, geo exact x 2
    assert '<td class="num best"><strong>23.45</strong></td>' in page and '<td class="num">12.34</td>' in page
    assert f"<td>{MARSCOPE_LABEL} {FORCED_MARK}</td>" in page
    assert "1 older record(s) superseded" in page
    assert "landform-broken.json" in page  # listed as unreadable


def test_corrupt_record_files_are_named_not_fatal(
    written: tuple[WrittenReport, list[str]], report_results: Results
) -> None:
    warnings = written[1]
    assert len(warnings) == 2
    assert any(str(report_results.corrupt) in line and "not valid JSON" in line for line in warnings)
    assert any(str(report_results.invalid) in line and "task" in line for line in warnings)


# -- the command ---------------------------------------------------------------------------------


def test_cli_report_prints_where_the_report_is(
    report_results: Results, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert main(["report", "--results", str(report_results.root), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"report: {out / 'index.html'}" in captured.out.splitlines()
    assert f"markdown: {out / 'report.md'}" in captured.out.splitlines()
    assert "10 run record(s) shown" in captured.out
    assert "landform-broken.json" in captured.err and "Traceback" not in captured.err
    assert (out / "index.html").is_file() and (out / "leaderboard-landform.csv").is_file()


def test_cli_report_without_records_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["report", "--results", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    assert "no run records under" in capsys.readouterr().err
    assert main(["report", "--results", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_report_of_one_v1_record_has_its_table_and_no_figure(tmp_path: Path) -> None:
    record = RunRecord.model_validate(
        {
            "version": 1, "id": "p", "task": "paired", "model": MARSCOPE, "dataset_dir": "/d",
            "collection": "c", "variant": "parity", "metrics": {"i2t_r1": 0.5},
            "created_at": "2024-01-01T00:00:00", "duration_s": 1.0,
        }
    )  # fmt: skip
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "p.json").write_text(record.model_dump_json())
    report = generate_report(tmp_path / "results", tmp_path / "out", warn=pytest.fail)
    markdown = report.markdown.read_text()
    assert f"| {MARSCOPE_LABEL} | refined_caption | **50.00** | - |" in markdown
    assert "No curves in these records (version 1 records" in markdown and "![" not in markdown
    assert not (tmp_path / "out" / "figures").exists()

"""`marsbench report`: records found recursively, the newest per run, leaderboards in Markdown, CSV
and one offline HTML page with figures; bad files named, never fatal."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from report_fixtures import FP_A, FP_B, MARSCOPE, Results, write_results, write_two_datasets

from marsbench.cli.leaderboard import FORCED_MARK, BoardEntry, build_boards
from marsbench.cli.main import main
from marsbench.cli.report import WrittenReport, generate_report
from marsbench.cli.report.baselines import expected_ap, paired_random
from marsbench.cli.report.collect import Unreadable, collect, dataset_label, model_labels, read_record, slot
from marsbench.evaluator.metrics.landform import metrics_from_hits
from marsbench.schemas.jobs import TaskName
from marsbench.schemas.runs import RunRecord

MARSCOPE_LABEL = "marscope@marscope.pt"
PAIRED_DS, GEO_DS = "paired/dataset", "geolocalization/dataset"  # fixture records: no fingerprint


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
        ["clip", "refined_caption", PAIRED_DS, "12.34", "50.00", "12", "20.00", "11.11", "45.00", "12",
         "18.00"],
        [MARSCOPE_LABEL, "refined_caption", PAIRED_DS, "**23.45**", "**67.89**", "**5**", "**30.00**",
         *paired[1][7:]],
    ]  # fmt: skip
    assert all(cell.startswith("**") for cell in paired[1][3:])
    assert "99.99" not in markdown  # the superseded record

    landform = table_rows(section(markdown, "Landform retrieval"))
    assert landform == [
        ["clip", "landform/dataset", "38.00", "25.00", "**60.00**", "**90.00**"],  # ties are all bold
        [MARSCOPE_LABEL, "landform/dataset", "**60.80**", "**40.00**", "**60.00**", "**90.00**"],
    ]

    geo_md = section(markdown, "Global geo-localization")
    assert "| model | query | dataset | landslides F1 | yardangs F1 | mean F1 | mean AUPRC |" in geo_md
    assert table_rows(geo_md) == [
        ["clip", "text", GEO_DS, "12.00", "10.00", "11.00", "6.00"],
        ["clip", "image", GEO_DS, "**13.00**", "11.00", "**12.00**", "**7.00**"],
        [f"{MARSCOPE_LABEL} {FORCED_MARK}", "text", GEO_DS, "-", "**34.56**", "-", "-"],
        [MARSCOPE_LABEL, "image", GEO_DS, "-", "5.00", "-", "-"],
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
    assert f"| {MARSCOPE_LABEL} | refined_caption | d | **50.00** | - |" in markdown
    assert "No curves in these records (version 1 records" in markdown and "![" not in markdown
    assert not (tmp_path / "out" / "figures").exists()


# -- datasets, random baselines, AUPRC 0 (issue 18, item 5) -------------------------------------------


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = write_two_datasets(tmp_path_factory.mktemp("two") / "results")
    report = generate_report(root, tmp_path_factory.mktemp("two-report"), warn=pytest.fail)
    return report.markdown.read_text()


def test_a_run_on_a_second_dataset_is_a_second_row_not_a_newer_record(tmp_path: Path) -> None:
    collected = collect(write_two_datasets(tmp_path / "results"))
    paired = [item.record.id for item in collected.records if item.record.task is TaskName.PAIRED]
    assert sorted(paired) == ["paired-a", "paired-b"] and collected.superseded_total == 0
    record = next(item.record for item in collected.records if item.record.id == "paired-a")
    assert dataset_label(record) == f"mars-a/dataset {FP_A[:8]}"
    # Without a fingerprint (version 1 and hand-written records) the folder keys the run.
    old = next(item.record for item in collected.records if item.record.id == "landform-chance")
    assert slot(old).dataset == "dir:/data/lf-old/dataset" and dataset_label(old) == "lf-old/dataset"


def test_two_datasets_have_their_own_rows_and_random_baselines(two_datasets: str) -> None:
    paired = section(two_datasets, "Paired image-text retrieval")
    rows = table_rows(paired)
    label_a, label_b = f"mars-a/dataset {FP_A[:8]}", f"mars-b/dataset {FP_B[:8]}"
    assert [row[:3] for row in rows] == [
        ["clip", "refined_caption", label_a],
        ["clip", "refined_caption", label_b],
        ["_random ranking (N=240)_", "", f"_{label_a}_"],
        ["_random ranking (N=4)_", "", f"_{label_b}_"],
    ]
    # N = 240: R@1 = 1/240, R@10 = 10/240, MedR = 241/2, MRR = H_240/240 = 6.05994/240 = 0.0252497.
    assert rows[2][3:7] == ["_0.42_", "_4.17_", "_120.5_", "_2.52_"]
    # N = 4: R@1 = 1/4, R@10 = 4/4, MedR = 5/2, MRR = (1 + 1/2 + 1/3 + 1/4)/4 = 25/48.
    assert rows[3][3:7] == ["_25.00_", "_100.00_", "_2.5_", "_52.08_"]
    assert rows[3][7:] == rows[3][3:7]  # the same both ways
    assert "R@k = k/N, MedR = (N+1)/2, MRR = H_N/N" in paired
    assert "Records from 2 datasets" in paired and "never replaced" in paired


def test_landform_baseline_is_the_exact_expectation_or_the_records_chance(two_datasets: str) -> None:
    landform = section(two_datasets, "Landform retrieval")
    rows = {tuple(row[:2]): row[2:] for row in table_rows(landform)}
    exact = rows[("_random ranking (N=4)_", f"_lf-small/dataset {FP_A[:8]}_")]
    # N = 4, classes of R = 2 and 1. AP: 49/72 (the six placements of 2 in 4: 1, 5/6, 3/4, 7/12, 1/2,
    # 5/12) and H_4/4 = 25/48: mean 0.6007. R-Prec: 2/4 and 1/4. nDCG@10: DCG of a random ranking
    # (R/4)(1 + 0.63093 + 0.5 + 0.43068) over IDCG 1.63093 (R = 2) and 1 (R = 1): 0.78532 and 0.64040,
    # mean 0.71286. Hit@10: 1 for both (10 >= N).
    assert exact == ["_60.07_", "_37.50_", "_71.29_", "_100.00_"]
    chance = rows[("_random ranking (N=50)_", "_lf-old/dataset_")]
    assert chance == ["_12.34_", "_10.00_", "_20.00_", "_30.00_"]  # the record's chance block
    assert "exact expectation per class" in landform and "20 seeded shuffles" in landform


def test_expected_ap_matches_enumeration_and_monte_carlo() -> None:
    assert expected_ap(4, 2) == pytest.approx(49 / 72)
    assert expected_ap(4, 1) == pytest.approx(25 / 48) and expected_ap(7, 7) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    hits = np.zeros(30, dtype=bool)
    hits[:5] = True
    trials = [metrics_from_hits(rng.permutation(hits)[:12], 5).ap for _ in range(20_000)]
    assert expected_ap(30, 5, max_k=12) == pytest.approx(float(np.mean(trials)), abs=0.005)
    assert paired_random(1) == {f"{d}_{m}": 1.0 for d in ("i2t", "t2i") for m in ("r1", "r10", "medr", "mrr")}


def test_geo_says_why_there_is_no_baseline_and_explains_auprc_zero(two_datasets: str) -> None:
    geo = section(two_datasets, "Global geo-localization")
    assert "random ranking" not in geo.split("\n- ", 1)[0]  # no baseline row
    assert "the records hold neither tile count (counts: retrieved, gt_points)" in geo
    assert "AUPRC 0.00 with recall 1 for clip (yardangs, text)" in geo and "zero width" in geo
    assert "clip (yardangs, image)" not in geo

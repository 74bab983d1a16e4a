"""`marsbench demo` end to end: synthetic data, marsbench-tiny, all services, real numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from marsbench.cli.main import main

pytestmark = pytest.mark.e2e


def test_demo_beats_chance_by_a_wide_margin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    [landform] = [json.loads(p.read_text()) for p in (tmp_path / "demo-runs").glob("landform-*.json")]
    mean_ap, chance = landform["metrics"]["mAP"], landform["chance"]["mAP"]
    print(f"demo landform mAP {mean_ap:.4f} vs chance {chance:.4f}")
    assert mean_ap > chance + 0.4  # measured 0.90 vs 0.17 when marsbench-tiny was trained
    assert "Landform retrieval, marsbench-tiny" in out and "random ranking" in out

    geo = [json.loads(p.read_text()) for p in (tmp_path / "demo-runs").glob("geolocalization-*.json")]
    assert {(r["landform"], r["query_mode"]) for r in geo} == {
        (landform, mode)
        for landform in ("alluvial_fans", "glacier-like_form", "landslides", "pitted_cones", "yardangs")
        for mode in ("text", "image", "hybrid")
    }
    for record in geo:
        assert set(record["metrics"]) == {"f1", "precision", "recall", "k", "auprc"}
        assert (tmp_path / "demo-runs" / record["artifacts"]["map"]).stat().st_size > 10_000
    assert "Global geo-localization, marsbench-tiny" in out

    [paired] = [json.loads(p.read_text()) for p in (tmp_path / "demo-runs").glob("paired-*.json")]
    assert paired["caption_key"] == "refined_caption" and paired["skipped"] == 0
    pairs = paired["counts"]["pairs"]
    print(f"demo paired I2T R@10 {paired['metrics']['i2t_r10']:.4f} vs chance {10 / pairs:.4f}")
    assert paired["metrics"]["i2t_r10"] > 3 * 10 / pairs and paired["metrics"]["t2i_r10"] > 3 * 10 / pairs
    assert "Paired image-text retrieval, marsbench-tiny" in out

    # It ends by writing the report of its records and printing where; the page needs no network.
    report = tmp_path / "demo-runs" / "report" / "index.html"
    assert out.rstrip().endswith(f"report: {report}")
    page = report.read_text()
    assert "Landform retrieval" in page and "Global geo-localization" in page and "http" not in page
    assert len(list((report.parent / "figures").glob("*.png"))) >= 16  # per-class bars and 15 maps

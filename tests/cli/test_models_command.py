"""`marsbench models` without a running encoder lists the registry this installation serves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from marsbench.cli.main import main
from marsbench.encoder.registry import registered_specs
from tests.encoder.test_registry import BENCHMARK_MODELS


def test_models_table_lists_every_registered_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in BENCHMARK_MODELS | {"marsbench-tiny"}:
        assert name in out
    dinov3 = next(line for line in out.splitlines() if line.startswith("dinov3-vitl16"))
    assert " image " in f" {dinov3} " and "image+text" not in dinov3
    assert "needs checkpoint" in next(line for line in out.splitlines() if line.startswith("marscope"))


def test_models_json_includes_a_registry_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = tmp_path / "lab.toml"
    registry.write_text('[models.lab]\nfamily = "open_clip"\nsource = "ViT-B-32"\n')
    assert main(["models", "--json", "--registry", str(registry)]) == 0
    cards = {card["id"]: card for card in map(json.loads, capsys.readouterr().out.splitlines())}
    assert cards["lab"]["family"] == "open_clip" and cards["lab"]["status"] == "available"
    assert set(cards) == {*registered_specs(), "lab"}


def test_geo_runs_against_running_services_need_the_encoder_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MARSBENCH_ENCODER_URL", raising=False)
    args = ["run", "geolocalization", "--dataset-dir", str(tmp_path), "--model", "marsbench-tiny",
            "--out", str(tmp_path / "out"),
            "--indexer-url", "http://127.0.0.1:9", "--evaluator-url", "http://127.0.0.1:9"]  # fmt: skip
    assert main(args) != 0  # no catalogue here: a clear error, not a traceback
    assert "no ground_truth/ folder" in capsys.readouterr().err
    assert main([*args, "--landform", "crater"]) != 0
    assert "--encoder-url" in capsys.readouterr().err

"""Item 3 of issue 9: dataset folders named in requests must lie under MARSBENCH_DATASET_ROOTS; `..`
and symlinks leaving the roots are refused (403 naming the path and the roots)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from marsbench.evaluator.app import create_app as create_evaluator
from marsbench.evaluator.settings import EvaluatorSettings
from marsbench.indexer.app import create_app as create_indexer
from marsbench.indexer.settings import IndexerSettings
from marsbench.security import DatasetRoots, PathNotAllowed, StartupRefused
from tests.security.conftest import KEY


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "data"
    (root / "landform" / "dataset").mkdir(parents=True)
    outside = tmp_path / "private"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    (root / "alias").symlink_to(root / "landform")
    (tmp_path / "data-evil").mkdir()  # shares the root's name as a prefix
    return {"root": root, "outside": outside, "tmp": tmp_path}


def test_paths_under_the_root_pass_resolved(layout: dict[str, Path]) -> None:
    roots = DatasetRoots.of([layout["root"]])
    inside = layout["root"] / "landform" / "dataset"
    assert roots.confine(str(inside)) == inside
    assert roots.confine(f"{layout['root']}/landform/../landform/dataset") == inside
    assert roots.confine(str(layout["root"] / "alias" / "dataset")) == inside  # a link that stays inside


@pytest.mark.parametrize(
    "attempt",
    [
        "{outside}",
        "{root}/../private",
        "{root}/landform/../../private",
        "{root}/escape",  # a symlink inside the root that points out of it
        "{root}/escape/../../data/../private",
        "{tmp}/data-evil",
        "/etc",
        "relative/path",  # resolved against the working directory, outside the root
    ],
)
def test_paths_leaving_the_roots_are_refused(layout: dict[str, Path], attempt: str) -> None:
    path = attempt.format(**{k: str(v) for k, v in layout.items()})
    with pytest.raises(PathNotAllowed) as caught:
        DatasetRoots.of([layout["root"]]).confine(path)
    assert path in str(caught.value) and str(layout["root"]) in str(caught.value)


def test_no_roots_means_any_folder_on_loopback_and_refusal_beyond(tmp_path: Path) -> None:
    assert DatasetRoots.of([]).confine("/etc") == Path("/etc")
    for make, cls in ((create_indexer, IndexerSettings), (create_evaluator, EvaluatorSettings)):
        with pytest.raises(StartupRefused, match="MARSBENCH_DATASET_ROOTS"):
            make(cls(host="0.0.0.0", api_key=KEY, data_dir=tmp_path))  # type: ignore[operator]


def test_roots_come_from_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARSBENCH_DATASET_ROOTS", "/data, /mnt/extra ,")
    assert IndexerSettings().dataset_roots == ["/data", "/mnt/extra"]
    assert EvaluatorSettings().dataset_roots == ["/data", "/mnt/extra"]


@pytest.fixture
def services(layout: dict[str, Path]) -> Iterator[dict[str, TestClient]]:
    common = {"dataset_roots": [str(layout["root"])], "data_dir": layout["tmp"] / "state"}
    with (
        TestClient(create_indexer(IndexerSettings(**common, resume_jobs=False))) as indexer,  # type: ignore[arg-type]
        TestClient(create_evaluator(EvaluatorSettings(**common))) as evaluator,  # type: ignore[arg-type]
    ):
        yield {"indexer": indexer, "evaluator": evaluator}


def test_indexer_and_evaluator_answer_403_naming_path_and_roots(
    services: dict[str, TestClient], layout: dict[str, Path]
) -> None:
    requests = {
        "indexer": ("/v1/jobs", {"task": "landform", "model": "marsbench-tiny"}),
        "evaluator": ("/v1/runs", {"task": "landform", "model": "marsbench-tiny"}),
    }
    for name, (path, body) in requests.items():
        for attempt in (str(layout["outside"]), f"{layout['root']}/../private", f"{layout['root']}/escape"):
            response = services[name].post(path, json=body | {"dataset_dir": attempt})
            assert response.status_code == 403, (name, attempt, response.text)
            answer = response.json()["error"]
            assert answer["type"] == "PathNotAllowed"
            assert answer["detail"] == {"path": attempt, "roots": [str(layout["root"])]}
            assert "MARSBENCH_DATASET_ROOTS" in answer["message"]


def test_a_folder_inside_the_roots_gets_past_the_check(
    services: dict[str, TestClient], layout: dict[str, Path]
) -> None:
    """Past the roots, the job is judged on the folder's contents (an empty folder: 422, not 403)."""
    inside = str(layout["root"] / "landform" / "dataset")
    response = services["indexer"].post(
        "/v1/jobs", json={"task": "landform", "model": "marsbench-tiny", "dataset_dir": inside}
    )
    assert response.status_code == 422, response.text


def test_run_records_and_artifacts_stay_in_the_runs_folder(services: dict[str, TestClient]) -> None:
    evaluator = services["evaluator"]
    for path in (
        "/v1/runs/..%2F..%2Fetc%2Fpasswd",
        "/v1/runs/..",
        "/v1/runs/x/artifacts/..%2F..%2Fetc%2Fpasswd",
        "/v1/runs/x/artifacts/.env",
    ):
        assert evaluator.get(path).status_code == 404, path

"""The CLI without its `encoder` extra (marsbench-cli[encoder]: the encoder, training and torch).

Each test runs the command in a fresh interpreter whose import system reports the extra's packages
as not installed, as in an install of marsbench-cli alone: the commands that talk to running
services work, and those that need a model here say which extra to install instead of a traceback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.cli.report_fixtures import write_results

# A finder ahead of every other one: the extra's packages and their submodules are "not installed".
_WITHOUT_EXTRA = """
import importlib.abc
import sys

MISSING = ("marsbench.encoder", "marsbench.training", "torch", "torchvision", "open_clip")


class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == m or name.startswith(m + ".") for m in MISSING):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
from marsbench.cli.main import main

code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if any(m == x or m.startswith(x + ".") for x in MISSING))
assert not loaded, loaded
sys.exit(code)
"""

EXTRA_HINT = "install marsbench-cli[encoder]"


def marsbench_without_extra(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_EXTRA, *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)},  # no MARSBENCH_* settings of this shell
    )


def test_help_and_report_work_without_the_encoder(tmp_path: Path) -> None:
    shown = marsbench_without_extra("--help", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "usage: marsbench" in shown.stdout and "train" in shown.stdout
    results = tmp_path / "results"
    write_results(results)
    report = marsbench_without_extra("report", "--results", str(results), "--out", "report", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "report" / "index.html").is_file()


def test_a_benchmark_against_running_services_needs_no_encoder_here(tmp_path: Path) -> None:
    config = tmp_path / "bench.yaml"
    config.write_text("datasets:\n  paired: data\nmodels:\n  - marsbench-tiny\n")
    nowhere = "http://127.0.0.1:9"  # discard port: nothing answers
    answer = marsbench_without_extra(
        "benchmark", "--config", str(config), "--out", "out", "--dry-run",
        "--indexer-url", nowhere, "--evaluator-url", nowhere, "--encoder-url", nowhere,
        cwd=tmp_path,
    )  # fmt: skip
    assert answer.returncode == 2
    assert "the encoder does not answer" in answer.stderr  # it got as far as asking the remote encoder
    assert EXTRA_HINT not in answer.stderr and "Traceback" not in answer.stderr


def test_commands_that_run_a_model_here_name_the_extra_to_install(tmp_path: Path) -> None:
    commands = {
        "models": ["models"],
        "train": ["train", "--data", "data", "--out", "out"],
        "run": ["run", "landform", "--dataset-dir", "data", "--model", "marsbench-tiny", "--out", "out",
                "--data-dir", "state"],
    }  # fmt: skip
    for name, argv in commands.items():
        answer = marsbench_without_extra(*argv, cwd=tmp_path)
        assert answer.returncode == 2, (name, answer.stderr)
        assert EXTRA_HINT in answer.stderr, (name, answer.stderr)
        assert "Traceback" not in answer.stderr, (name, answer.stderr)

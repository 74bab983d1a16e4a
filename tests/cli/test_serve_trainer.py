"""Issue 19: `marsbench serve` runs the trainer app (POST /v1/train) on its own port when the training
package is installed, and the three services alone, saying why in one log line, when it is not.

`serve` runs as a user runs it, in its own process on free loopback ports (port 0: the printed URLs
name the ports it got); without the training package, its interpreter's import system reports
`marsbench.training` as not installed, as tests/cli/test_encoder_extra.py does for the whole extra.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from marsbench.cli.stack import TRAIN_DIR_NAME, serving_train_dir, stack_trainer
from marsbench.encoder.settings import EncoderSettings
from marsbench.training.settings import TrainerSettings

PORTS = ["--encoder-port", "0", "--indexer-port", "0", "--evaluator-port", "0", "--trainer-port", "0"]
EXTRA_HINT = "install marsbench-cli[encoder]"

# `marsbench serve` in an interpreter where the training package is "not installed".
_WITHOUT_TRAINING = """
import importlib.abc
import sys


class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "marsbench.training" or name.startswith("marsbench.training."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
from marsbench.cli.main import main

sys.exit(main(sys.argv[1:]))
"""


@dataclass
class Served:
    """One `marsbench serve` process; its stdout and stderr go to files."""

    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return self.stderr.read_text(errors="replace")[-3000:]

    def urls(self, timeout_s: float = 90.0) -> dict[str, str]:
        """The `name   url` lines serve prints once every server has started."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            lines = self.stdout.read_text().splitlines()
            if any(line.startswith("search ") for line in lines):
                return dict(line.split(maxsplit=1) for line in lines)
            assert self.process.poll() is None, f"serve exited early:\n{self.output()}"
            time.sleep(0.1)
        raise TimeoutError(f"serve did not come up in {timeout_s} s:\n{self.output()}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)


@pytest.fixture
def started() -> Iterator[list[Served]]:
    """The serve processes a test starts, killed at its end if still running."""
    processes: list[Served] = []
    try:
        yield processes
    finally:
        for served in processes:
            if served.process.poll() is None:
                served.process.kill()
                served.process.wait(30)


def serve(tmp_path: Path, started: list[Served], *interpreter_args: str) -> Served:
    """`python <interpreter_args> serve` over `tmp_path/state`, with none of this shell's settings."""
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    command = [sys.executable, *interpreter_args, "serve", "--data-dir", str(tmp_path / "state"), *PORTS]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            command,
            cwd=tmp_path,
            stdout=stdout,
            stderr=stderr,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        )
    served = Served(process, out, err)
    started.append(served)
    return served


def test_serve_answers_on_the_trainer_port(tmp_path: Path, started: list[Served]) -> None:
    served = serve(tmp_path, started, "-m", "marsbench.cli.main")
    urls = served.urls()
    assert set(urls) == {"encoder", "indexer", "evaluator", "trainer", "search"}
    assert len({urls[name] for name in ("encoder", "indexer", "evaluator", "trainer")}) == 4
    listed = httpx.get(f"{urls['trainer']}/v1/train", timeout=10)
    assert listed.status_code == 200, listed.text
    assert listed.json() == {"data": []}
    assert httpx.get(f"{urls['trainer']}/readyz", timeout=10).status_code == 200
    assert served.stop() == 0, served.output()
    assert "trainer not available" not in served.output()


def test_serve_starts_without_the_training_package(tmp_path: Path, started: list[Served]) -> None:
    served = serve(tmp_path, started, "-c", _WITHOUT_TRAINING)
    urls = served.urls()
    assert set(urls) == {"encoder", "indexer", "evaluator", "search"}, urls
    for name in ("encoder", "indexer", "evaluator"):
        assert httpx.get(f"{urls[name]}/healthz", timeout=10).status_code == 200, name
    # One log line says that the trainer is not served, and why.
    said = [line for line in served.output().splitlines() if "trainer not available" in line]
    assert len(said) == 1, served.output()
    assert "marsbench.training" in said[0] and EXTRA_HINT in said[0]
    assert "Traceback" not in served.output()
    assert served.stop() == 0, served.output()


def test_the_stack_trainer_writes_under_the_data_dir_unless_told(tmp_path: Path) -> None:
    default = stack_trainer(TrainerSettings(), data_dir=tmp_path / "state", host="0.0.0.0")
    assert default.train_dir == (tmp_path / "state").resolve() / TRAIN_DIR_NAME
    assert default.host == "0.0.0.0"
    told = TrainerSettings(train_dir=tmp_path / "elsewhere")  # as MARSBENCH_TRAIN_DIR sets it
    assert stack_trainer(told, data_dir=tmp_path / "state", host="127.0.0.1").train_dir == told.train_dir


def test_the_encoder_serves_what_the_trainer_writes(tmp_path: Path) -> None:
    train_dir = tmp_path / "state" / TRAIN_DIR_NAME
    # Loopback without roots: any path is served already; confining it to one folder would narrow it.
    open_local = EncoderSettings(host="127.0.0.1", model_roots=[])
    assert serving_train_dir(open_local, train_dir).model_roots == []
    # Roots set: the trainer's folder joins them, once.
    confined = EncoderSettings(host="127.0.0.1", model_roots=[str(tmp_path / "models")])
    widened = serving_train_dir(confined, train_dir)
    assert widened.model_roots == [str(tmp_path / "models"), str(train_dir.resolve())]
    assert serving_train_dir(widened, train_dir).model_roots == widened.model_roots
    # A root that holds the folder covers it.
    covering = EncoderSettings(host="127.0.0.1", model_roots=[str(tmp_path)])
    assert serving_train_dir(covering, train_dir).model_roots == [str(tmp_path)]
    # Beyond loopback no request path is served without roots: the trainer's folder becomes the one.
    exposed = EncoderSettings(host="0.0.0.0", model_roots=[])
    assert serving_train_dir(exposed, train_dir).model_roots == [str(train_dir.resolve())]

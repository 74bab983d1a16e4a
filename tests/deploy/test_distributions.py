"""The workspace's distributions, as installed and as declared.

The indexer, the evaluator and the client install without torch (and the client without a web
framework), judged by the installed metadata's transitive closure and by what importing them
loads; every member carries the release's version and pins its siblings to it; the member list
is the same wherever it is written.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from marsbench.version import __version__
from tests.deploy.conftest import ROOT
from tests.deploy.installed import chain, installed_closure
from tests.deploy.workspace import is_workspace, members, workspace_closure, workspace_paths

# What loads models: none of it belongs in a service that only calls an encoder.
MODEL_STACK = frozenset({"torch", "torchvision", "transformers", "open-clip-torch"})
WEB_FRAMEWORK = frozenset({"fastapi", "starlette"})
NO_TORCH = {
    "marsbench-indexer": MODEL_STACK,
    "marsbench-evaluator": MODEL_STACK,
    "marsbench-client": MODEL_STACK | WEB_FRAMEWORK,
}
# The modules each imports (every module of its package), and the top-level packages they must not load.
IMPORTS = {
    "marsbench.indexer": ("marsbench.indexer.app", {"torch", "torchvision", "transformers", "open_clip"}),
    "marsbench.evaluator": ("marsbench.evaluator.app", {"torch", "torchvision", "transformers", "open_clip"}),
    "marsbench.client": ("marsbench.client", {"torch", "fastapi", "starlette"}),
}
DISTRIBUTION_OF = {
    "marsbench.indexer": "services/indexer",
    "marsbench.evaluator": "services/evaluator",
    "marsbench.client": "clients/python",
}


# -- (a) the installed closure ------------------------------------------------------------------


@pytest.mark.parametrize("distribution", sorted(NO_TORCH))
def test_installed_closure_has_no_model_stack(distribution: str) -> None:
    required_by = installed_closure([Requirement(distribution)])
    assert distribution in required_by and "pydantic" in required_by  # the walk reached something
    found = sorted(set(required_by) & NO_TORCH[distribution])
    assert not found, "; ".join(" -> ".join(chain(required_by, name)) for name in found)


def test_installed_closure_respects_extras() -> None:
    """An extra's requirements count where something asks for that extra, and only there."""
    cli = installed_closure([Requirement("marsbench-cli")])
    with_encoder = installed_closure([Requirement("marsbench-cli[encoder]")])
    assert "marsbench-encoder" not in cli and "torch" not in cli
    assert {"marsbench-encoder", "marsbench-training", "torch"} <= set(with_encoder)
    assert set(cli) < set(with_encoder)
    # uvicorn[standard], as the services ask for it: its extra's servers and loops come along.
    assert "uvloop" not in installed_closure([Requirement("uvicorn")])
    assert {"uvloop", "httptools", "websockets"} <= set(installed_closure([Requirement("marsbench-indexer")]))


# -- (b) what importing them loads --------------------------------------------------------------

PROBE = """
import importlib, json, pkgutil, sys
package, first = sys.argv[1], sys.argv[2]
importlib.import_module(first)
root = importlib.import_module(package)
for info in pkgutil.walk_packages(root.__path__, prefix=package + "."):
    importlib.import_module(info.name)
print(json.dumps({name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())}))
"""


def loaded_modules(package: str, first: str, tmp_path: Path) -> dict[str, str | None]:
    """Module -> file, after a fresh interpreter imports `first`, then every module of `package`."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, package, first],
        cwd=tmp_path,  # nothing of the checkout's on the path but the installed distributions
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded: dict[str, str | None] = json.loads(done.stdout)
    return loaded


@pytest.mark.parametrize("package", sorted(IMPORTS))
def test_importing_loads_no_model_stack(package: str, tmp_path: Path) -> None:
    first, forbidden = IMPORTS[package]
    loaded = loaded_modules(package, first, tmp_path)
    assert first in loaded
    found = sorted(forbidden & {name.split(".")[0] for name in loaded})
    how = f"python -X importtime -c 'import {first}' shows who imports them"
    assert not found, f"importing {package} loads {found} ({how})"


@pytest.mark.parametrize("package", sorted(IMPORTS))
def test_importing_needs_only_declared_members(package: str, tmp_path: Path) -> None:
    """Every marsbench module it loads comes from a member its distribution depends on: installed
    alone (pip install marsbench-indexer, the slim images), it imports."""
    first, _ = IMPORTS[package]
    declared = workspace_closure(DISTRIBUTION_OF[package])
    members_by_path = {member.path: member for member in members().values()}
    sources = {path: (ROOT / path / "src").resolve() for path in workspace_paths()}
    used: dict[str, str] = {}
    for name, file in loaded_modules(package, first, tmp_path).items():
        if name.split(".")[0] != "marsbench" or file is None:
            continue  # the namespace itself has no file
        where = Path(file).resolve()
        member = next((path for path, src in sources.items() if where.is_relative_to(src)), None)
        assert member is not None, f"{name} is not from this checkout's members: {file}"
        used.setdefault(member, name)
    undeclared = {member: module for member, module in used.items() if member not in declared}
    fixes = [f"{members_by_path[m].name}=={__version__} (loads {module})" for m, module in undeclared.items()]
    assert not undeclared, f"{DISTRIBUTION_OF[package]}/pyproject.toml: add the dependencies {fixes}"


# -- (c) one version ----------------------------------------------------------------------------


def test_every_member_has_the_release_version() -> None:
    for name, member in members().items():
        assert member.version == __version__, f"{member.path}/pyproject.toml: {member.version}"
        assert importlib.metadata.version(name) == __version__, f"{name} is installed at another version"


def test_members_pin_each_other_to_the_release() -> None:
    expected = f"=={__version__}"
    for name, member in members().items():
        declared = [r for r in member.requirements() if is_workspace(r)]
        installed = [Requirement(r) for r in importlib.metadata.requires(name) or []]
        for requirement in [*declared, *(r for r in installed if is_workspace(r))]:
            assert canonicalize_name(requirement.name) in members(), f"{name}: {requirement} is no member"
            assert str(requirement.specifier) == expected, f"{name}: {requirement} (want {expected})"


# -- (d) one member list ------------------------------------------------------------------------


def bootstrap_members() -> list[str]:
    text = (ROOT / "scripts/bootstrap.sh").read_text()
    match = re.search(r"^members=\(([^)]*)\)", text, flags=re.MULTILINE)
    assert match, "scripts/bootstrap.sh has no members=(...) list"
    return match[1].split()


def member_folders() -> set[str]:
    """Folders below the root whose pyproject.toml declares a distribution (hidden folders skipped)."""
    found = set()
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders if not d.startswith((".", "__")) and d != "node_modules"]
        manifest = Path(folder) / "pyproject.toml"
        if manifest.parent != ROOT and "pyproject.toml" in files and "[project]" in manifest.read_text():
            found.add(manifest.parent.relative_to(ROOT).as_posix())
    return found


def test_one_member_list() -> None:
    listed = workspace_paths()
    assert bootstrap_members() == listed, "scripts/bootstrap.sh lists other members than pyproject.toml"
    assert member_folders() == set(listed)
    assert len(set(listed)) == len(listed)


def test_members_are_listed_in_dependency_order() -> None:
    """bootstrap.sh installs them in this order; each comes after every member it needs."""
    order = {member.path: index for index, member in enumerate(members().values())}
    for member in members().values():
        for requirement in member.requirements():
            if is_workspace(requirement):
                needed = members()[canonicalize_name(requirement.name)]
                assert order[needed.path] < order[member.path], f"{member.path} before {needed.path}"

"""The import contracts of the root pyproject's [tool.importlinter], run by import-linter itself.

The contracts hold on the tree as it is, and they are not vacuous: a copy of the product code in
which a service core imports an HTTP client (or the client package) breaks the ports contract,
and one in which the encoder's adapters reach up into its core breaks the layers contract.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"


def _members() -> list[Path]:
    members = tomllib.loads(PYPROJECT.read_text())["tool"]["uv"]["workspace"]["members"]
    return [ROOT / m for m in members]


def _lint_imports(*args: str, tree: Path | None = None) -> subprocess.CompletedProcess[str]:
    """import-linter on the installed product, or on `tree` alone: `python -S` skips the editable
    installs' .pth files, so the only `marsbench` on the path is the copy's."""
    env = dict(os.environ)
    command = [sys.executable, "-c", _LINT, "--no-cache", "--no-logo", *args]
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tree), *site.getsitepackages()])
        command.insert(1, "-S")
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


_LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def _contract_ids() -> list[str]:
    return [c["id"] for c in tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]]


def test_every_contract_holds() -> None:
    done = _lint_imports(str(PYPROJECT))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout, done.stdout


def test_the_contracts_cover_the_seams() -> None:
    assert set(_contract_ids()) >= {
        "encoder-layers",
        "ports",
        "services-independent",
        "cli-factories",
        "client-wire-only",
        "shared-below-services",
        "no-torch",
    }


_NOT_SOURCE = shutil.ignore_patterns("__pycache__", "marsbench-tiny")  # weights, not code


@pytest.fixture(scope="module")
def product_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every member's src/marsbench merged into one tree (the namespace, as installed)."""
    root = tmp_path_factory.mktemp("product") / "src"
    for member in _members():
        shutil.copytree(member / "src", root, dirs_exist_ok=True, ignore=_NOT_SOURCE)
    return root


@pytest.mark.parametrize(
    ("module", "statement", "contract"),
    [
        ("marsbench/indexer/core/pipeline.py", "import httpx", "ports"),
        ("marsbench/evaluator/core/search.py", "import marsbench.client", "ports"),
        ("marsbench/encoder/core/batcher.py", "import fastapi", "ports"),
        ("marsbench/encoder/adapters/base.py", "import marsbench.encoder.core.engine", "encoder-layers"),
        ("marsbench/indexer/core/jobs.py", "import marsbench.evaluator.app", "services-independent"),
        ("marsbench/client/_base.py", "import marsbench.store", "client-wire-only"),
        ("marsbench/evaluator/core/search.py", "import torch", "no-torch"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    product_copy: Path, tmp_path: Path, module: str, statement: str, contract: str
) -> None:
    tree = tmp_path / "src"
    shutil.copytree(product_copy, tree)
    target = tree / module
    target.write_text(target.read_text() + f"\n{statement}  # probe: must break {contract}\n")
    done = _lint_imports(str(PYPROJECT), "--contract", contract, tree=tree)
    assert done.returncode != 0, done.stdout
    importer = module.removesuffix(".py").replace("/", ".")
    imported = statement.split()[-1]
    assert f"{importer} -> {imported}" in " ".join(done.stdout.split()), done.stdout

"""Package discovery only; all metadata lives in pyproject.toml.

The repository is laid out by architecture (one folder per service, clients apart) while the
import names share one `marsbench` namespace, so each import root maps to its own folder.
"""

from setuptools import find_packages, setup

IMPORT_ROOTS = {
    "marsbench": "marsbench",
    "marsbench.encoder": "services/encoder",
    "marsbench.indexer": "services/indexer",
    "marsbench.evaluator": "services/evaluator",
    "marsbench.client": "clients/python",
    "marsbench.cli": "clients/cli",
}

packages: list[str] = []
for name, folder in IMPORT_ROOTS.items():
    packages.append(name)
    packages.extend(f"{name}.{sub}" for sub in find_packages(folder))

setup(packages=packages, package_dir=IMPORT_ROOTS)

"""The workspace as its files declare it: the members, their manifests, their pins on each other.

Read from the root pyproject's [tool.uv.workspace] and each member's pyproject.toml, never from
what is installed (test_distributions compares the two).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.conftest import ROOT

WORKSPACE_PREFIX = "marsbench-"


@dataclass(frozen=True)
class Member:
    path: str  # the member's folder, relative to the repository root ("services/indexer")
    name: str  # its distribution, canonical ("marsbench-indexer")
    version: str
    dependencies: tuple[Requirement, ...]
    optional: dict[str, tuple[Requirement, ...]]

    def requirements(self, *, extras: bool = True) -> list[Requirement]:
        """Its dependencies, and with `extras` those of every optional group too."""
        groups = self.optional.values() if extras else ()
        return [*self.dependencies, *(r for group in groups for r in group)]


def is_workspace(requirement: Requirement) -> bool:
    return canonicalize_name(requirement.name).startswith(WORKSPACE_PREFIX)


def workspace_paths() -> list[str]:
    """The members' folders, as the root pyproject lists them."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(root["tool"]["uv"]["workspace"]["members"])


def read_member(path: str) -> Member:
    project = tomllib.loads((ROOT / path / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    return Member(
        path=path,
        name=canonicalize_name(project["name"]),
        version=project["version"],
        dependencies=tuple(Requirement(r) for r in project.get("dependencies", [])),
        optional={extra: tuple(Requirement(r) for r in reqs) for extra, reqs in optional.items()},
    )


@cache
def members() -> dict[str, Member]:
    """Every member by distribution name, in the root's order."""
    found = [read_member(path) for path in workspace_paths()]
    return {member.name: member for member in found}


def by_path(path: str) -> Member:
    return next(m for m in members().values() if m.path == path)


def workspace_closure(path: str) -> set[str]:
    """The folders of `path`'s member and of every member its dependencies (not extras) reach."""
    every = members()
    todo, seen = [by_path(path)], set[str]()
    while todo:
        member = todo.pop()
        if member.path in seen:
            continue
        seen.add(member.path)
        todo.extend(every[canonicalize_name(r.name)] for r in member.dependencies if is_workspace(r))
    return seen

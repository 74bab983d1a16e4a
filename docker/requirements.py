#!/usr/bin/env python3
"""Print the third-party requirements of some workspace members, one a line, for `pip -r`.

    python requirements.py libs/wire libs/common services/indexer > requirements.txt

Reads each member folder's pyproject.toml ([project].dependencies) and leaves out the workspace's
own distributions (marsbench-*): gpu.Dockerfile installs those from their source afterwards with
`pip install --no-deps`, so this dependency layer needs only the manifests and stays cached while
the code changes. Markers and extras are kept as written (pip evaluates them). Standard library
only: it runs in the image's bare build venv.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import Any

WORKSPACE_PREFIX = "marsbench-"
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical_name(requirement: str) -> str:
    """The distribution a PEP 508 requirement names, normalised as PEP 503 does."""
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match[1]).lower()


def _manifest(member: Path) -> dict[str, Any]:
    with (member / "pyproject.toml").open("rb") as manifest:
        project: dict[str, Any] = tomllib.load(manifest)["project"]
        return project


def member_dependencies(member: Path) -> list[str]:
    return list(_manifest(member).get("dependencies", []))


def _requested_extras(requirement: str) -> list[str]:
    """The extras a requirement asks of its distribution: `name[a, b]==1` -> ["a", "b"]."""
    match = re.match(r"\s*[A-Za-z0-9._-]+\s*\[([^\]]*)\]", requirement)
    return [e.strip() for e in match[1].split(",") if e.strip()] if match else []


def third_party(members: list[Path]) -> list[str]:
    """The members' requirements on anything outside the workspace, first mention first, no repeats,
    with the optional groups one member asks of another (`marsbench-common[tiles]`)."""
    by_name = {canonical_name(str(_manifest(m)["name"])): m for m in members}
    seen: dict[str, None] = {}
    for member in members:
        for requirement in member_dependencies(member):
            name = canonical_name(requirement)
            if not name.startswith(WORKSPACE_PREFIX):
                seen.setdefault(requirement.strip())
                continue
            extras = _requested_extras(requirement)
            if extras and name not in by_name:
                raise SystemExit(f"{member} asks {requirement!r} of a member not in this build")
            optional = _manifest(by_name[name]).get("optional-dependencies", {}) if extras else {}
            for extra in extras:
                for wanted in optional[extra]:
                    seen.setdefault(wanted.strip())
    return list(seen)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 64
    print("\n".join(third_party([Path(arg) for arg in argv[1:]])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

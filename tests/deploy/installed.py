"""What `pip install X` pulls in, read from the distributions installed in this environment.

The closure walks importlib.metadata's requires(): each requirement's marker is evaluated for this
interpreter and platform, with `extra` set to each extra asked of that distribution (and to none,
for its own dependencies), so an extra's requirements count only where something asks for it.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def applies(requirement: Requirement, extra: str) -> bool:
    """Whether `requirement` is one of its distribution's dependencies when installed with `extra`
    ("" for the plain install)."""
    return requirement.marker is None or requirement.marker.evaluate({"extra": extra})


def installed_closure(roots: Iterable[Requirement]) -> dict[str, set[str]]:
    """Every distribution `roots` reach, canonical name -> the distributions that require it.

    Fails on a requirement with nothing installed for it: the walk could not see past it.
    """
    required_by: dict[str, set[str]] = {}
    todo = [(canonicalize_name(r.name), extra, "<root>") for r in roots for extra in ("", *r.extras)]
    done: set[tuple[str, str]] = set()
    missing: list[str] = []
    while todo:
        name, extra, parent = todo.pop()
        required_by.setdefault(name, set()).add(parent)
        if (name, extra) in done:
            continue
        done.add((name, extra))
        try:
            requires = importlib.metadata.distribution(name).requires or []
        except importlib.metadata.PackageNotFoundError:
            missing.append(f"{name} (required by {parent})")
            continue
        for raw in requires:
            requirement = Requirement(raw)
            if applies(requirement, extra):
                child = canonicalize_name(requirement.name)
                todo.extend((child, sub, name) for sub in ("", *requirement.extras))
    assert not missing, f"required but not installed: {sorted(set(missing))}"
    return required_by


def chain(required_by: dict[str, set[str]], name: str) -> list[str]:
    """One path from a root to `name`, for a readable failure."""
    path = [name]
    while (parents := required_by.get(path[-1], set()) - set(path)) and "<root>" not in parents:
        path.append(sorted(parents)[0])
    return path[::-1]

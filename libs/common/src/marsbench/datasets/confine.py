"""Keeping dataset readers inside the dataset roots, whatever links a dataset folder holds.

The services check the dataset folder a request names (`marsbench.security.DatasetRoots`), but a
folder inside the roots can still hold symlinks that point out of them: a class folder entry
linking to `/etc/passwd`, a shard or tile linking to another user's files. Every reader therefore
resolves each file (and folder) it is about to read and refuses what lands outside the roots:
streams report it to their `SkipLog` and go on, single inputs (a ground-truth file, a query
image) raise `OutsideRoots`. The refused file is never opened.

No roots (a loopback service that may read any folder) means no boundary: a link then reaches
nothing the caller could not name directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from marsbench.datasets.errors import DatasetError

ROOTS_SETTING = "MARSBENCH_DATASET_ROOTS"


class OutsideRoots(DatasetError):
    """A dataset entry resolves (through a symlink) outside the dataset roots; it was not read."""


@dataclass(frozen=True, slots=True)
class Confinement:
    """The resolved dataset roots a reader may read under; empty: anywhere."""

    roots: tuple[Path, ...] = ()

    @classmethod
    def of(cls, roots: Iterable[str | Path] | Confinement | None) -> Confinement:
        if isinstance(roots, Confinement):
            return roots
        return cls(tuple(Path(root).expanduser().resolve() for root in roots or ()))

    def problem(self, path: Path) -> str | None:
        """Why `path` must not be read (it resolves outside the roots), or None when it may be.

        Resolving follows every link on the way, so a linked parent folder counts as well as a
        linked file. The reason names the entry and its target, for the skip log and for errors.
        """
        if not self.roots:
            return None
        try:
            target = path.resolve()
        except (OSError, RuntimeError) as exc:  # a link loop, or a name the file system refuses
            return f"{path} cannot be resolved ({exc}); not read"
        if any(target.is_relative_to(root) for root in self.roots):
            return None
        shown = ", ".join(str(root) for root in self.roots)
        return (
            f"{path} is a link to {target}, outside the dataset roots ({shown}); not read (replace the link "
            f"with the file, or add its folder to {ROOTS_SETTING})"
        )

    def allows(self, path: Path) -> bool:
        return self.problem(path) is None

    def check(self, path: Path) -> Path:
        """`path` when it may be read; OutsideRoots naming the link and its target otherwise."""
        problem = self.problem(path)
        if problem is not None:
            raise OutsideRoots(problem)
        return path


RootsArg = Iterable[str | Path] | Confinement | None

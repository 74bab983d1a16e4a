"""gpu.Dockerfile read as its instructions: stages, what each inherits, what each copies and runs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache

from tests.deploy.conftest import DOCKERFILE

Instruction = tuple[str, str]  # (KEYWORD, its arguments)


@dataclass
class Stage:
    name: str
    base: str  # an image (global ARGs resolved), or the name of an earlier stage
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def instructions(text: str) -> Iterator[Instruction]:
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


@dataclass(frozen=True)
class Dockerfile:
    args: dict[str, str]  # global ARG defaults
    stages: dict[str, Stage]  # in file order

    def lineage(self, name: str) -> list[Stage]:
        """The stage and the stages it is built FROM, the first base first."""
        found = [self.stages[name]]
        while found[-1].base in self.stages:
            found.append(self.stages[found[-1].base])
        return found[::-1]

    def image(self, name: str) -> str:
        """The image a stage's lineage starts from."""
        return self.lineage(name)[0].base

    def inherited(self, name: str) -> list[Instruction]:
        """Every instruction that made the stage, its bases' first."""
        return [step for stage in self.lineage(name) for step in stage.instructions]

    def env(self, name: str) -> dict[str, str]:
        """The stage's ENV as set by its lineage (later values win)."""
        found: dict[str, str] = {}
        for keyword, args in self.inherited(name):
            if keyword == "ENV":
                for pair in args.split():
                    key, _, value = pair.partition("=")
                    found[key] = value
        return found

    def cmd(self, name: str) -> list[str]:
        """The exec-form CMD the stage runs (the last one its lineage sets)."""
        commands = [args for keyword, args in self.inherited(name) if keyword == "CMD"]
        assert commands, f"{name} has no CMD"
        parsed: list[str] = json.loads(commands[-1])
        return parsed


def parse(text: str) -> Dockerfile:
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
    return Dockerfile(args, stages)


@cache
def dockerfile() -> Dockerfile:
    return parse(DOCKERFILE.read_text())

"""The benchmark grid's config file (`marsbench benchmark --config bench.yaml`).

Strict on purpose: a misspelt key (`caption_key` for `caption_keys`, `geo` for `geolocalization`)
would otherwise fall back to a default silently and a multi-day grid would measure the wrong
thing. Unknown keys, duplicate keys and wrong types are refused up front, naming the key and
the file. Relative paths are relative to the config file's folder, so a config means the same
whatever the working directory.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from marsbench.cli.errors import CommandError
from marsbench.schemas.jobs import TaskName
from marsbench.schemas.runs import QueryMode, RunCreate
from marsbench.tasks.paired import CAPTION_KEYS, DEFAULT_CAPTION_KEY

_T = TypeVar("_T")
_LANDFORM_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class ConfigError(CommandError):
    """The config file cannot be read or does not validate; the message names file and key."""


def _default(field: str) -> Any:
    # One source for the query defaults: the evaluator's request schema.
    return RunCreate.model_fields[field].default


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelEntry(_Section):
    """A model reference as `marsbench run --model` takes it, optionally with a checkpoint file."""

    model: str = Field(min_length=1, description="Registered name or open_clip:<arch>[:<pretrained>].")
    checkpoint: Path | None = Field(default=None, description="Weights file in open_clip's format.")
    label: str | None = Field(default=None, min_length=1, description="Row name in the leaderboard.")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: object) -> object:
        # `- marsbench-tiny` is the common case; the mapping form is for checkpoints and labels.
        return {"model": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_checkpoint(self) -> ModelEntry:
        if self.checkpoint is not None and "@" in self.model:
            raise ValueError(f"model {self.model!r} already names a checkpoint; drop 'checkpoint' or the '@'")
        return self

    def reference(self) -> str:
        """The encoder reference, `REF@/abs/checkpoint` as `marsbench run --checkpoint` builds it."""
        return f"{self.model}@{self.checkpoint}" if self.checkpoint is not None else self.model

    def name(self) -> str:
        if self.label:
            return self.label
        return f"{self.model}@{self.checkpoint.name}" if self.checkpoint is not None else self.model


class Datasets(_Section):
    """The published `dataset/` folder of each task to run; a task without one is not run."""

    paired: Path | None = None
    landform: Path | None = None
    geolocalization: Path | None = None


class PairedOptions(_Section):
    caption_keys: list[str] = Field(default_factory=lambda: [DEFAULT_CAPTION_KEY], min_length=1)
    top_lists: bool = Field(default=False, description="Keep each query's top-10 list beside the record.")

    @field_validator("caption_keys")
    @classmethod
    def _known_keys(cls, keys: list[str]) -> list[str]:
        unknown = [key for key in keys if key not in CAPTION_KEYS]
        if unknown:
            raise ValueError(f"unknown caption key(s) {unknown}; the benchmark's are {list(CAPTION_KEYS)}")
        return _unique(keys, "caption_keys")


class LandformOptions(_Section):
    max_k: int | None = Field(default=None, ge=1, description="Ranking cut-off; unset ranks everything.")


class GeoOptions(_Section):
    landforms: Literal["all"] | list[str] = Field(
        default="all", description="'all' (every ground_truth/<landform>.csv) or a list."
    )
    query_modes: Literal["all"] | list[QueryMode] = "all"
    top_k: int = Field(default=_default("top_k"), ge=1, le=1_000_000)
    radius_deg: float = Field(default=_default("radius_deg"), gt=0, le=10)
    mix_ratio: float = Field(default=_default("mix_ratio"), ge=0, le=1)
    temperature: float = Field(default=_default("temperature"), gt=0)

    @field_validator("landforms")
    @classmethod
    def _landform_names(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, str):
            return value
        if not value:
            raise ValueError("give at least one landform, or 'all'")
        bad = [name for name in value if not _LANDFORM_NAME.match(name)]
        if bad:
            raise ValueError(f"landform names are ground_truth/<name>.csv file stems; got {bad}")
        return _unique(value, "landforms")

    @field_validator("query_modes")
    @classmethod
    def _modes(cls, value: str | list[QueryMode]) -> str | list[QueryMode]:
        if isinstance(value, list) and not value:
            raise ValueError("give at least one query mode, or 'all'")
        return value if isinstance(value, str) else _unique(value, "query_modes")

    def modes(self) -> list[QueryMode]:
        return list(QueryMode) if self.query_modes == "all" else list(self.query_modes)


class BenchmarkConfig(_Section):
    datasets: Datasets
    models: list[ModelEntry] = Field(min_length=1)
    out: Path | None = Field(default=None, description="Run records and leaderboard (--out overrides).")
    paired: PairedOptions = Field(default_factory=PairedOptions)
    landform: LandformOptions = Field(default_factory=LandformOptions)
    geolocalization: GeoOptions = Field(default_factory=GeoOptions)

    @model_validator(mode="after")
    def _grid(self) -> BenchmarkConfig:
        if not self.tasks():
            raise ValueError(
                f"'datasets' names no task; give a path for any of {[t.value for t in TaskName]}"
            )
        _unique([entry.reference() for entry in self.models], "models")
        _unique([entry.name() for entry in self.models], "model labels")
        return self

    def tasks(self) -> list[TaskName]:
        """The tasks with a dataset, in the benchmark's order."""
        return [task for task in TaskName if getattr(self.datasets, task.value) is not None]

    def dataset(self, task: TaskName) -> Path:
        path = getattr(self.datasets, task.value)
        if path is None:
            raise KeyError(task)
        return path

    def resolved(self, base: Path) -> BenchmarkConfig:
        """Relative paths (datasets, checkpoints, out) made absolute against `base`."""

        def absolute(path: Path | None) -> Path | None:
            return None if path is None else (base / path.expanduser()).resolve()

        datasets = Datasets(**{task.value: absolute(getattr(self.datasets, task.value)) for task in TaskName})
        models = [
            entry.model_copy(update={"checkpoint": absolute(entry.checkpoint)}) for entry in self.models
        ]
        return self.model_copy(update={"datasets": datasets, "models": models, "out": absolute(self.out)})


def _unique(values: list[_T], what: str) -> list[_T]:
    repeated = sorted({str(value) for value in values if values.count(value) > 1})
    if repeated:
        raise ValueError(f"{what} repeat {repeated}")
    return values


# -- loading ------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses duplicate keys (plain YAML keeps the last one silently)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_config(path: Path) -> BenchmarkConfig:
    """Read, validate and resolve a config file; every problem is a `ConfigError` naming the file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read benchmark config {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with 'datasets' and 'models' at the top level")
    try:
        config = BenchmarkConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_errors(path, exc)) from None
    return config.resolved(path.resolve().parent)


def describe_errors(path: Path, exc: ValidationError) -> str:
    lines = [f"invalid benchmark config {path}:"]
    # Values that may take several forms (`all` or a list) fail once per form; pydantic tags those
    # locations with the form's name. Untagged, the messages of one key are joined, and a form
    # that got further into the value (an item of the list) hides the one that failed at the key.
    by_place: dict[tuple[int | str, ...], list[str]] = {}
    tagged: set[tuple[int | str, ...]] = set()
    for error in exc.errors():
        loc = tuple(part for part in error["loc"] if not _union_tag(part))
        if error["type"] == "extra_forbidden":
            parent = _dotted(loc[:-1])
            allowed = _allowed_keys(loc[:-1])
            hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
            lines.append(f"  - unknown key {loc[-1]!r}{f' in {parent}' if parent else ''}{hint}")
            continue
        if len(loc) != len(error["loc"]):
            tagged.add(loc)
        message = error["msg"].removeprefix("Value error, ")
        by_place.setdefault(loc, [])
        if message not in by_place[loc]:
            by_place[loc].append(message)
    for loc, messages in by_place.items():
        if loc in tagged and any(other[: len(loc)] == loc and other != loc for other in tagged):
            continue
        lines.append(f"  - {_dotted(loc) or 'top level'}: {'; or '.join(messages)}")
    return "\n".join(lines)


def _union_tag(part: int | str) -> bool:
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def _dotted(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the section at `loc` accepts, by walking the models' field annotations."""
    annotation: Any = BenchmarkConfig
    for part in loc:
        if isinstance(part, int):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0] if args else None
        elif (
            isinstance(annotation, type)
            and issubclass(annotation, BaseModel)
            and part in annotation.model_fields
        ):
            annotation = annotation.model_fields[part].annotation
        else:
            return []
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
            annotation = next((a for a in typing.get_args(annotation) if a is not type(None)), None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []

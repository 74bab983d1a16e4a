"""Finding run records under a folder and keeping the newest of each run.

Any folder will do: the out folders of `marsbench run/benchmark/demo`, the evaluator's runs dir,
or a tree of them. Files there that are not run records (leaderboard CSVs, top-10 lists, other
JSON) are passed over silently; a file that looks like a record but cannot be read is reported
by name, since a silently missing row would read as a model that was never run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import NamedTuple

from pydantic import ValidationError

from marsbench.schemas.jobs import TaskName
from marsbench.schemas.runs import RunRecord
from marsbench.tasks.paired import DEFAULT_CAPTION_KEY

# `<stem>.top10.json`: paired top-k lists beside their record, possibly large; never records.
_TOP_LISTS = re.compile(r"\.top\d+\.json$")


@dataclass(frozen=True)
class FoundRecord:
    record: RunRecord
    path: Path  # its artifacts (the geo map) are named relative to this file's folder


@dataclass(frozen=True)
class Unreadable:
    path: Path
    reason: str


class RunSlot(NamedTuple):
    """Where a run goes in the report: two records with the same slot measured the same thing,
    and the newer one replaces the older."""

    task: TaskName
    model: str
    caption_key: str | None
    landform: str | None
    query_mode: str | None
    # The data measured on: the reader's fingerprint (`provenance.dataset.fingerprint`), or for records
    # without one (version 1) `dir:<dataset_dir>`. A run on another dataset is another run.
    dataset: str = ""


@dataclass(frozen=True)
class Collected:
    records: list[FoundRecord]  # the newest per slot, in slot order
    superseded: dict[RunSlot, int] = field(default_factory=dict)  # older records per slot
    unreadable: list[Unreadable] = field(default_factory=list)
    not_records: int = 0  # JSON files passed over (top lists, other JSON)

    @property
    def superseded_total(self) -> int:
        return sum(self.superseded.values())


def slot(record: RunRecord) -> RunSlot:
    # A paired record without a caption key was made with the default one (as benchmark.record_key).
    caption_key = (record.caption_key or DEFAULT_CAPTION_KEY) if record.task is TaskName.PAIRED else None
    mode = str(record.query_mode) if record.query_mode is not None else None
    return RunSlot(record.task, record.model, caption_key, record.landform, mode, dataset_key(record))


def dataset_fingerprint(record: RunRecord) -> str | None:
    return record.provenance.dataset.fingerprint if record.provenance is not None else None


def dataset_key(record: RunRecord) -> str:
    """What tells datasets apart: the reader's fingerprint, else (older records) the folder."""
    return dataset_fingerprint(record) or f"dir:{record.dataset_dir}"


def dataset_folder(path: str) -> str:
    """A dataset folder in short: its name, with its parent's when the name is the published `dataset`."""
    folder = PurePath(path)
    if folder.name == "dataset" and folder.parent.name:
        return f"{folder.parent.name}/{folder.name}"
    return folder.name or path


def dataset_label(record: RunRecord) -> str:
    """The dataset column: folder name and the fingerprint's first 8 hex digits (when the record has
    one), e.g. `paired/dataset 1a2b3c4d`."""
    fingerprint = dataset_fingerprint(record)
    folder = dataset_folder(record.dataset_dir)
    return f"{folder} {fingerprint[:8]}" if fingerprint else folder


def candidate_files(results_dir: Path) -> list[Path]:
    """Every `*.json` under `results_dir` that may be a record, sorted: not hidden (interrupted
    atomic writes are `.name.pid.tmp`, and `.git` is no results), not a top list."""
    found = []
    for path in results_dir.rglob("*.json"):
        relative = path.relative_to(results_dir)
        if any(part.startswith(".") for part in relative.parts) or _TOP_LISTS.search(path.name):
            continue
        if path.is_file():
            found.append(path)
    return sorted(found)


def read_record(path: Path) -> RunRecord | Unreadable | None:
    """The record in `path`; `Unreadable` when it looks like one (it names a task and metrics) but
    is not valid; None when it is some other file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return Unreadable(path, f"cannot read: {exc.strerror or exc}")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        # Truncated or corrupt: judged by its text, since it does not parse.
        looks_like = b'"task"' in raw and b'"metrics"' in raw
        return Unreadable(path, f"not valid JSON: {exc}") if looks_like else None
    if not isinstance(data, dict) or "task" not in data or "metrics" not in data:
        return None
    try:
        return RunRecord.model_validate(data)
    except ValidationError as exc:
        return Unreadable(path, f"not a valid run record: {_errors(exc)}")


def _errors(exc: ValidationError, shown: int = 3) -> str:
    """The first few problems, one line: enough to find the field without a page of pydantic."""
    errors = exc.errors()
    parts = [
        f"{'.'.join(str(p) for p in error['loc']) or 'record'}: {error['msg']}" for error in errors[:shown]
    ]
    more = f" (and {len(errors) - shown} more)" if len(errors) > shown else ""
    return "; ".join(parts) + more


def _utc(moment: datetime) -> datetime:
    # Hand-written or old records may carry naive times; the evaluator writes UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def newest_per_slot(found: Iterable[FoundRecord]) -> tuple[list[FoundRecord], dict[RunSlot, int]]:
    """The newest record (created_at, then path, so the choice is stable) of each slot, sorted by
    slot, and how many older ones each slot had."""
    by_slot: dict[RunSlot, list[FoundRecord]] = {}
    for item in found:
        by_slot.setdefault(slot(item.record), []).append(item)
    latest, superseded = [], {}
    for key in sorted(by_slot, key=_slot_order):
        items = by_slot[key]
        latest.append(max(items, key=lambda item: (_utc(item.record.created_at), str(item.path))))
        if len(items) > 1:
            superseded[key] = len(items) - 1
    return latest, superseded


_TASK_ORDER = {
    task: i for i, task in enumerate((TaskName.PAIRED, TaskName.LANDFORM, TaskName.GEOLOCALIZATION))
}
_MODE_ORDER = {"text": 0, "image": 1, "hybrid": 2}


def _slot_order(key: RunSlot) -> tuple[object, ...]:
    """Tasks in the paper's order, then model, caption key, landform, query mode (text, image,
    hybrid): the order rows and columns appear in."""
    return (
        _TASK_ORDER.get(key.task, len(_TASK_ORDER)),
        key.model.lower(),
        key.model,
        key.caption_key or "",
        key.landform or "",
        _MODE_ORDER.get(key.query_mode or "", len(_MODE_ORDER)),
        key.dataset,
    )


def collect(results_dir: Path) -> Collected:
    found: list[FoundRecord] = []
    unreadable: list[Unreadable] = []
    not_records = 0
    for path in candidate_files(results_dir):
        outcome = read_record(path)
        if isinstance(outcome, RunRecord):
            found.append(FoundRecord(outcome, path))
        elif isinstance(outcome, Unreadable):
            unreadable.append(outcome)
        else:
            not_records += 1
    latest, superseded = newest_per_slot(found)
    return Collected(latest, superseded, unreadable, not_records)


def model_labels(references: Sequence[str]) -> dict[str, str]:
    """Row names: `REF@/abs/dir/file.pt` shortened to `REF@file.pt` as the benchmark names a model
    with a checkpoint, unless two references would then look the same."""

    def short(reference: str) -> str:
        base, sep, checkpoint = reference.partition("@")
        return f"{base}@{Path(checkpoint).name}" if sep and "/" in checkpoint else reference

    shorts = {reference: short(reference) for reference in dict.fromkeys(references)}
    counts: dict[str, int] = {}
    for label in shorts.values():
        counts[label] = counts.get(label, 0) + 1
    return {ref: label if counts[label] == 1 else ref for ref, label in shorts.items()}

"""From the records found to the report's content: per task its leaderboards, notes and figures.

The Markdown and HTML renderings both start from `Report`, so they say the same things.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from marsbench.cli.leaderboard import (
    FORCED_MARK,
    PARITY,
    TASK_TITLES,
    BoardEntry,
    Leaderboard,
    build_boards,
    parity_metrics,
)
from marsbench.cli.report import baselines
from marsbench.cli.report.collect import (
    Collected,
    FoundRecord,
    RunSlot,
    dataset_key,
    dataset_label,
    model_labels,
    slot,
)
from marsbench.cli.report.figures import Series, model_colors, per_class_figure, pr_figure, recall_at_k_figure
from marsbench.schemas.jobs import TaskName
from marsbench.schemas.runs import RunRecord

FIGURES_DIR = "figures"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PAIRED_CURVES = (("image \u2192 text", "i2t_recall_at_k"), ("text \u2192 image", "t2i_recall_at_k"))
_LINESTYLES = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class FigureRef:
    file: str  # relative to the report folder, e.g. figures/geo-pr-yardangs.png
    caption: str
    group: str = ""  # maps: the landform, so a page can lay them out by landform


@dataclass(frozen=True)
class Section:
    task: TaskName
    board: Leaderboard  # parity variant
    variants: list[tuple[str, Leaderboard]]  # other variants, by name
    notes: list[str]
    figures: list[FigureRef]  # curves and bars
    maps: list[FigureRef] = field(default_factory=list)

    @property
    def title(self) -> str:
        return TASK_TITLES[self.task]

    @property
    def anchor(self) -> str:
        return self.task.value


@dataclass(frozen=True)
class Report:
    results_dir: Path
    collected: Collected
    sections: list[Section]
    generated_at: datetime


class FigureNames:
    """File names under figures/ from free text (landform and model names), unique per report."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def __call__(self, *parts: str) -> str:
        stem = "-".join(re.sub(r"[^A-Za-z0-9._-]+", "_", part).strip("._") or "x" for part in parts)
        name, n = f"{stem}.png", 2
        while name.lower() in self._used:
            name, n = f"{stem}-{n}.png", n + 1
        self._used.add(name.lower())
        return name


@dataclass(frozen=True)
class _Context:
    labels: dict[str, str]  # model reference -> row name
    colors: dict[str, str]  # row name -> color
    figures_dir: Path
    names: FigureNames

    def label(self, record: RunRecord) -> str:
        return self.labels[record.model]

    def ref(self, name: str, caption: str, group: str = "") -> FigureRef:
        return FigureRef(f"{FIGURES_DIR}/{name}", caption, group)


def build_report(collected: Collected, results_dir: Path, out_dir: Path) -> Report:
    """Boards and notes for every task with records, figures drawn into `out_dir`/figures."""
    labels = model_labels([item.record.model for item in collected.records])
    context = _Context(labels, model_colors(list(labels.values())), out_dir / FIGURES_DIR, FigureNames())
    sections = []
    for task in dict.fromkeys(item.record.task for item in collected.records):
        found = [item for item in collected.records if item.record.task is task]
        superseded = {key: n for key, n in collected.superseded.items() if key.task is task}
        sections.append(_section(task, found, superseded, context))
    return Report(results_dir, collected, sections, datetime.now(UTC))


def _section(
    task: TaskName, found: Sequence[FoundRecord], superseded: dict[RunSlot, int], context: _Context
) -> Section:
    records = [item.record for item in found]
    [board] = build_boards(_entries(records, context, parity_metrics), track_forced=True)
    variants = []
    for name in _other_variants(records):
        having = [record for record in records if name in record.variants]  # no rows of '-' only
        [other] = build_boards(_entries(having, context, _variant(name)), track_forced=True)
        variants.append((name, other))
    rows, baseline_notes = _baselines(task, records)
    board = replace(board, baselines=rows)
    variants = [(name, replace(other, baselines=rows)) for name, other in variants]
    notes = [
        *_dataset_notes(records),
        *baseline_notes,
        *_forced_notes(records, context),
        *_superseded_notes(superseded, context),
        *_variant_notes(records, [name for name, _ in variants]),
    ]
    if task is TaskName.GEOLOCALIZATION and any(
        value is None for _, values in board.rows for value in values[-2:]
    ):
        notes.append("mean F1 / mean AUPRC only for rows with a record for every landform ('-' otherwise).")
    if task is TaskName.GEOLOCALIZATION:
        notes += _zero_auprc_notes(records, context)
    figures, figure_notes = _figures(task, found, context)
    maps, map_notes = _maps(found, context) if task is TaskName.GEOLOCALIZATION else ([], [])
    return Section(task, board, variants, [*notes, *figure_notes, *map_notes], figures, maps)


def _variant(name: str) -> Callable[[RunRecord], Mapping[str, float]]:
    """A record's metrics of variant `name` (each record here has it)."""

    def metrics(record: RunRecord) -> Mapping[str, float]:
        return record.variants[name]

    return metrics


def _entries(
    records: Sequence[RunRecord], context: _Context, metrics: Callable[[RunRecord], Mapping[str, float]]
) -> list[BoardEntry]:
    return [
        BoardEntry(
            task=record.task,
            label=context.label(record),
            caption_key=slot(record).caption_key,
            landform=record.landform,
            query_mode=slot(record).query_mode,
            dataset=dataset_label(record),
            metrics=dict(metrics(record)),
            forced=record.forced,
        )
        for record in records
    ]


def _other_variants(records: Sequence[RunRecord]) -> list[str]:
    return [name for name in dict.fromkeys(n for r in records for n in r.variants) if name != PARITY]


def _describe(record: RunRecord, context: _Context) -> str:
    """A run in words: the model and what else tells its row/column apart."""
    key = slot(record)
    details = [part for part in (key.caption_key, key.landform, key.query_mode) if part]
    return f"{context.label(record)} ({', '.join(details)})" if details else context.label(record)


def _runs(n: int) -> str:
    return f"{n} run{'s' * (n != 1)}"


def _dataset_notes(records: Sequence[RunRecord]) -> list[str]:
    """Each dataset column value with its folder; the column's fingerprint is the reader's
    (`provenance.dataset.fingerprint`: file names, sizes and reader options), absent from version 1
    records, which are told apart by folder."""
    labels = {dataset_label(record): record.dataset_dir for record in records}
    described = "; ".join(f"{label} = {path}" for label, path in sorted(labels.items()))
    if len(labels) == 1:
        return [f"Dataset: {described} (the dataset column: folder and the data's fingerprint)."]
    return [
        f"Records from {len(labels)} datasets ({described}): a run on one is never replaced by a run on "
        "another, and numbers compare only within one dataset."
    ]


_RANDOM = "random ranking"


def _baselines(
    task: TaskName, records: Sequence[RunRecord]
) -> tuple[tuple[tuple[tuple[str, ...], tuple[float | None, ...]], ...], list[str]]:
    """One random-ranking row per dataset of the section (none for geo), and the footnotes saying how
    they were computed or what is missing. Rows are built for the board's columns by `build_boards`."""
    if task is TaskName.GEOLOCALIZATION:
        return (), [baselines.GEO_MISSING]
    compute = baselines.paired_baseline if task is TaskName.PAIRED else baselines.landform_baseline
    by_dataset: dict[str, list[RunRecord]] = {}
    for record in records:
        by_dataset.setdefault(dataset_key(record), []).append(record)
    rows, missing, methods = [], [], set()
    for group in by_dataset.values():
        found = next((b for b in map(compute, group) if b is not None), None)
        label = dataset_label(group[0])
        if found is None:
            missing.append(label)
            continue
        methods.add(found.exact)
        name = f"{_RANDOM} ({found.size})" if found.size else _RANDOM
        entry = BoardEntry(task, name, caption_key="", dataset=label, metrics=found.metrics)
        [board] = build_boards([entry])
        rows.append((board.rows[0][0], tuple(board.rows[0][1])))
    notes = []
    if task is TaskName.PAIRED and methods:
        notes.append(baselines.PAIRED_FORMULA)
    if task is TaskName.LANDFORM:
        if True in methods:
            notes.append(baselines.LANDFORM_EXACT_FORMULA)
        if False in methods:
            notes.append(baselines.LANDFORM_CHANCE_FORMULA)
    if missing:
        what = "counts.pairs" if task is TaskName.PAIRED else "counts.images with class sizes, or chance"
        notes.append(f"No random baseline for {', '.join(missing)}: the records hold no {what}.")
    return tuple(rows), notes


def _zero_auprc_notes(records: Sequence[RunRecord], context: _Context) -> list[str]:
    """Parity AUPRC is a trapezoid sum over recall on the k grid: when recall is 1 at every grid k
    (every ground-truth point covered from the first k on) all trapezoids have zero width and the
    area is 0, however good the precision. Detected as AUPRC 0 with recall 1 at the best point
    (recall never falls as k grows, and any grid point below recall 1 would give a positive area)."""
    runs = [
        _describe(record, context)
        for record in records
        if (metrics := parity_metrics(record)).get("auprc") == 0.0 and metrics.get("recall", 0.0) >= 1.0
    ]
    if not runs:
        return []
    return [
        f"AUPRC 0.00 with recall 1 for {', '.join(runs)}: recall is already 1 at every k of the parity "
        "grid, so the trapezoids over recall have zero width and the area is 0 by construction, not a "
        "failed retrieval; read F1 and precision for these runs (docs/benchmarks/geo-metrics.md)."
    ]


def _forced_notes(records: Sequence[RunRecord], context: _Context) -> list[str]:
    forced = [record for record in records if record.forced]
    if not forced:
        return []

    def state(record: RunRecord) -> str:
        value = (record.indexing or {}).get("state")
        return f" (indexing {value})" if isinstance(value, str) else ""

    runs = ", ".join(f"{_describe(record, context)}{state(record)}" for record in forced)
    return [
        f"{FORCED_MARK} forced: evaluated on an incomplete index, not comparable with complete runs: {runs}."
    ]


def _superseded_notes(superseded: dict[RunSlot, int], context: _Context) -> list[str]:
    if not superseded:
        return []
    total = sum(superseded.values())
    runs = ", ".join(
        f"{context.labels[key.model]}"
        + "".join(f" {part}" for part in (key.caption_key, key.landform, key.query_mode) if part)
        + f" \u00d7{n}"
        for key, n in superseded.items()
    )
    return [f"{total} older record(s) superseded by a newer record of the same run (newest shown): {runs}."]


def _variant_notes(records: Sequence[RunRecord], names: Sequence[str]) -> list[str]:
    if not names:
        return []
    counts = ", ".join(f"{name} ({_runs(sum(name in r.variants for r in records))})" for name in names)
    return [f"Other metric variants in these records: {counts}; a table for each below."]


# -- figures -------------------------------------------------------------------------------------


def _figures(
    task: TaskName, found: Sequence[FoundRecord], context: _Context
) -> tuple[list[FigureRef], list[str]]:
    records = [item.record for item in found]
    if task is TaskName.PAIRED:
        return _paired_figures(records, context)
    if task is TaskName.LANDFORM:
        return _landform_figures(records, context)
    return _geo_figures(records, context)


def _series_label(record: RunRecord, context: _Context) -> str:
    """The model's name in a legend, marked as in the tables when the run was forced."""
    return context.label(record) + (f" {FORCED_MARK}" if record.forced else "")


def _no_curve_note(records: Sequence[RunRecord], curve: str, context: _Context) -> list[str]:
    missing = [record for record in records if curve not in record.curves]
    if not missing:
        return []
    # Version-1 records predate curves; a newer one without them was made without (say so plainly).
    why = (
        " (version 1 records, made before records kept curves)" if all(r.version < 2 for r in missing) else ""
    )
    if len(missing) == len(records):
        return [f"No curves in these records{why}, so no curve figure."]
    runs = ", ".join(_describe(record, context) for record in missing)
    return [f"No curve in the record for: {runs}{why}."]


def _paired_figures(records: Sequence[RunRecord], context: _Context) -> tuple[list[FigureRef], list[str]]:
    keys = list(dict.fromkeys(slot(record).caption_key or "" for record in records))
    several = len(keys) > 1  # name the caption key only where it tells lines apart

    def series(curve: str) -> list[Series]:
        return [
            Series(
                _series_label(record, context) + (f" ({slot(record).caption_key})" if several else ""),
                context.colors[context.label(record)],
                record.curves[curve],
                _LINESTYLES[keys.index(slot(record).caption_key or "") % len(_LINESTYLES)],
            )
            for record in records
            if curve in record.curves
        ]

    notes = _no_curve_note(records, _PAIRED_CURVES[0][1], context)
    panels = [(title, series(curve)) for title, curve in _PAIRED_CURVES]
    if not any(lines for _, lines in panels):
        return [], notes
    name = context.names("paired-recall-at-k")
    recall_at_k_figure(context.figures_dir / name, panels)
    caption = "Recall@k of image\u2192text and text\u2192image retrieval (parity variant), one line per model"
    caption += " and caption key." if several else "."
    return [context.ref(name, caption)], notes


def _landform_figures(records: Sequence[RunRecord], context: _Context) -> tuple[list[FigureRef], list[str]]:
    with_classes = [record for record in records if record.per_class]
    missing = [_describe(record, context) for record in records if not record.per_class]
    notes = [f"No per-class numbers in the record for: {', '.join(missing)}."] if missing else []
    if not with_classes:
        return [], notes
    classes = sorted({name for record in with_classes for name in record.per_class})
    bars = [
        (
            _series_label(record, context),
            context.colors[context.label(record)],
            {name: values["mAP"] for name, values in record.per_class.items() if "mAP" in values},
        )
        for record in with_classes
    ]
    name = context.names("landform-ap-per-class")
    per_class_figure(context.figures_dir / name, classes, bars)
    return [context.ref(name, "Average precision (AP) per landform class and model.")], notes


def _geo_figures(records: Sequence[RunRecord], context: _Context) -> tuple[list[FigureRef], list[str]]:
    figures = []
    for landform in dict.fromkeys(record.landform or "" for record in records):
        of_landform = [record for record in records if (record.landform or "") == landform]
        modes = list(dict.fromkeys(slot(record).query_mode or "" for record in of_landform))
        panels = [
            (
                mode,
                [
                    Series(_series_label(r, context), context.colors[context.label(r)], r.curves["pr"])
                    for r in of_landform
                    if (slot(r).query_mode or "") == mode and "pr" in r.curves
                ],
            )
            for mode in modes
        ]
        if not any(lines for _, lines in panels):
            continue
        name = context.names("geo-pr", landform)
        pr_figure(context.figures_dir / name, landform, panels)
        caption = f"{landform}: precision against recall as k grows, per query mode (dot: best F1)."
        figures.append(context.ref(name, caption))
    return figures, _no_curve_note(records, "pr", context)


def _maps(found: Sequence[FoundRecord], context: _Context) -> tuple[list[FigureRef], list[str]]:
    """Each geo run's map PNG, copied from beside its record into figures/."""
    maps, missing = [], []
    for item in found:
        record = item.record
        artifact = record.artifacts.get("map")
        if artifact is None:
            continue
        source = _artifact_path(item, artifact)
        if source is None:
            missing.append(f"{_describe(record, context)}: {artifact}")
            continue
        key = slot(record)
        name = context.names("map", context.label(record), key.landform or "", key.query_mode or "")
        context.figures_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, context.figures_dir / name)
        caption = f"{key.landform} \u00b7 {key.query_mode} query \u00b7 {context.label(record)}"
        if record.forced:
            caption += f" {FORCED_MARK}"
        maps.append(context.ref(name, caption, group=key.landform or ""))
    notes = [f"Map not found beside its record (or not a PNG): {'; '.join(missing)}."] if missing else []
    return maps, notes


def _artifact_path(item: FoundRecord, name: str) -> Path | None:
    """The artifact beside the record, when it is a plain file name there holding a PNG: a record
    must not make the report copy files from elsewhere."""
    if Path(name).name != name or name in ("", ".", ".."):
        return None
    path = item.path.parent / name
    try:
        with path.open("rb") as file:
            return path if file.read(len(_PNG_SIGNATURE)) == _PNG_SIGNATURE else None
    except OSError:
        return None

"""Leaderboards: one table per task, models x metrics, parity variant (or another, for the report).

Pure: built from `BoardEntry`s (one per run: where it goes and its metrics), which the benchmark
makes from its planned runs and the records found for them (`leaderboards`) and `marsbench report`
from the records it found; rendered for the terminal (best per column marked `*`), Markdown (best
in bold), HTML (via `formatted`) and CSV (fractions as in the records, for machines, unmarked).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from marsbench.cli.tables import render_table
from marsbench.files import write_text_atomic
from marsbench.schemas.jobs import TaskName
from marsbench.schemas.runs import RunRecord

if TYPE_CHECKING:
    from marsbench.cli.benchmark import PlannedRun, RunKey

PARITY = "parity"
# Appended to the row name of a run evaluated on an incomplete index (`RunRecord.forced`).
FORCED_MARK = "\u2020"
LEADERBOARD_MD = "leaderboard.md"
TASK_TITLES = {
    TaskName.PAIRED: "Paired image-text retrieval",
    TaskName.LANDFORM: "Landform retrieval",
    TaskName.GEOLOCALIZATION: "Global geo-localization",
}


@dataclass(frozen=True)
class Column:
    key: str  # CSV header; the record's metric name where there is one
    title: str
    lower_is_better: bool = False
    rank: bool = False  # shown as is (MedR), not x100


@dataclass(frozen=True)
class Cell:
    text: str
    best: bool = False  # the best value of its column (ties all marked)


@dataclass(frozen=True)
class Leaderboard:
    task: TaskName
    row_headers: tuple[str, ...]
    columns: tuple[Column, ...]
    rows: list[tuple[tuple[str, ...], list[float | None]]]
    # Per row, whether a run in it was forced; None where the caller does not track it (the
    # benchmark, whose runs never are), so its CSV keeps its columns.
    forced: tuple[bool, ...] | None = None
    # Reference rows shown under the runs (the report's random-ranking baseline): never marked best,
    # not in the CSV (which holds measured runs only).
    baselines: tuple[tuple[tuple[str, ...], tuple[float | None, ...]], ...] = ()

    @property
    def title(self) -> str:
        return TASK_TITLES[self.task]

    def headers(self) -> list[str]:
        return [*self.row_headers, *(column.title for column in self.columns)]

    def best(self) -> list[set[int]]:
        """Per column, the rows holding its best value (ties all marked)."""
        marks: list[set[int]] = []
        for i, column in enumerate(self.columns):
            present = [
                (row, value) for row, (_, cells) in enumerate(self.rows) if (value := cells[i]) is not None
            ]
            if not present:
                marks.append(set())
                continue
            pick = min if column.lower_is_better else max
            best = pick(value for _, value in present)
            marks.append({row for row, value in present if value == best})
        return marks

    def formatted(self) -> list[list[Cell]]:
        """The displayed cells: row names (a forced run's first name marked), then values x100
        (ranks as they are), '-' for none. Every renderer but the CSV starts from these."""
        best = self.best()
        table = []
        for r, (names, values) in enumerate(self.rows):
            shown = list(names)
            if self.forced is not None and self.forced[r] and shown:
                shown[0] = f"{shown[0]} {FORCED_MARK}"
            cells = [Cell(name) for name in shown]
            for c, (column, value) in enumerate(zip(self.columns, values, strict=True)):
                if value is None:
                    cells.append(Cell("-"))
                    continue
                text = f"{value:g}" if column.rank else f"{100 * value:.2f}"
                cells.append(Cell(text, best=r in best[c]))
            table.append(cells)
        return table

    def formatted_baselines(self) -> list[list[Cell]]:
        """The baseline rows' cells, formatted as `formatted` does (none marked best)."""
        return [
            [
                *(Cell(name) for name in names),
                *(
                    Cell("-" if value is None else f"{value:g}" if column.rank else f"{100 * value:.2f}")
                    for column, value in zip(self.columns, values, strict=True)
                ),
            ]
            for names, values in self.baselines
        ]

    def _cells(self, mark: Callable[[str], str]) -> list[list[str]]:
        return [[mark(cell.text) if cell.best else cell.text for cell in row] for row in self.formatted()]

    def text(self) -> str:
        baselines = [[cell.text for cell in row] for row in self.formatted_baselines()]
        return render_table(self.headers(), [*self._cells(lambda text: f"{text}*"), *baselines])

    def markdown(self) -> str:
        align = ["---"] * len(self.row_headers) + ["---:"] * len(self.columns)
        # Baseline rows in italics, so that they do not read as runs.
        baselines = [
            [f"_{cell.text}_" if cell.text not in ("", "-") else cell.text for cell in row]
            for row in self.formatted_baselines()
        ]
        # A '|' in a model name would split its cell.
        rows = [*self._cells(lambda t: f"**{t}**"), *baselines]
        cells = [[text.replace("|", "\\|") for text in row] for row in rows]
        lines = [self.headers(), align, *cells]
        return "\n".join(f"| {' | '.join(row)} |" for row in lines)

    def csv(self) -> str:
        """Fractions as in the records (MedR a rank), full precision, no marks: for machines; a
        `forced` column (true/false) where the board tracks forced runs."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        flags = ["forced"] if self.forced is not None else []
        writer.writerow(
            [*(h.replace(" ", "_") for h in self.row_headers), *(c.key for c in self.columns), *flags]
        )
        for r, (names, values) in enumerate(self.rows):
            forced = [str(self.forced[r]).lower()] if self.forced is not None else []
            writer.writerow([*names, *("" if value is None else repr(value) for value in values), *forced])
        return buffer.getvalue()


_LANDFORM_COLUMNS = (
    Column("mAP", "mAP"),
    Column("r_precision", "R-Prec"),
    Column("ndcg@10", "nDCG@10"),
    Column("hit@10", "Hit@10"),
)
_PAIRED_COLUMNS = tuple(
    column
    for direction, name in (("i2t", "I2T"), ("t2i", "T2I"))
    for column in (
        Column(f"{direction}_r1", f"{name} R@1"),
        Column(f"{direction}_r10", f"{name} R@10"),
        Column(f"{direction}_medr", f"{name} MedR", lower_is_better=True, rank=True),
        Column(f"{direction}_mrr", f"{name} MRR"),
    )
)


def parity_metrics(record: RunRecord | None) -> Mapping[str, float]:
    if record is None:
        return {}
    return record.variants.get(PARITY, record.metrics)


@dataclass(frozen=True)
class BoardEntry:
    """One run's place in its task's table and its numbers (empty: no record, shown '-')."""

    task: TaskName
    label: str  # the model's row name
    caption_key: str | None = None  # paired: a second row header
    landform: str | None = None  # geo: the column
    query_mode: str | None = None  # geo: the second row header
    dataset: str | None = None  # the report: the last row header (a short dataset label)
    metrics: Mapping[str, float] = field(default_factory=dict)
    forced: bool = False


def leaderboards(planned: Sequence[PlannedRun], records: Mapping[RunKey, RunRecord]) -> list[Leaderboard]:
    """One table per task of the plan, rows in config order; a run without a record shows '-'."""
    entries = [
        BoardEntry(
            task=run.key.task,
            label=run.label,
            caption_key=run.key.caption_key,
            landform=run.key.landform,
            query_mode=str(run.key.query_mode) if run.key.query_mode is not None else None,
            metrics=parity_metrics(records.get(run.key)),
        )
        for run in planned
    ]
    return build_boards(entries)


def build_boards(entries: Sequence[BoardEntry], *, track_forced: bool = False) -> list[Leaderboard]:
    """One table per task, in the order the tasks first appear, rows in entry order. With
    `track_forced`, rows holding a forced run are marked (and the CSV says so)."""
    boards = []
    for task in dict.fromkeys(entry.task for entry in entries):
        runs = [entry for entry in entries if entry.task is task]
        if task is TaskName.GEOLOCALIZATION:
            board = _geo_board(runs)
        else:
            columns = _PAIRED_COLUMNS if task is TaskName.PAIRED else _LANDFORM_COLUMNS
            headers = ("model", "caption key") if task is TaskName.PAIRED else ("model",)
            rows = [
                (_row_names(entry), [entry.metrics.get(column.key) for column in columns]) for entry in runs
            ]
            board = Leaderboard(task, headers, columns, rows)
        if any(entry.dataset is not None for entry in runs):
            board = replace(board, row_headers=(*board.row_headers, "dataset"))
        if track_forced:
            forced = {_row_names(entry) for entry in runs if entry.forced}
            board = replace(board, forced=tuple(names in forced for names, _ in board.rows))
        boards.append(board)
    return boards


def _row_names(entry: BoardEntry) -> tuple[str, ...]:
    dataset = () if entry.dataset is None else (entry.dataset,)
    if entry.task is TaskName.PAIRED:
        return (entry.label, entry.caption_key or "", *dataset)
    if entry.task is TaskName.GEOLOCALIZATION:
        return (entry.label, entry.query_mode or "", *dataset)
    return (entry.label, *dataset)


def _geo_board(runs: Sequence[BoardEntry]) -> Leaderboard:
    """Rows (model, query mode), F1 per landform, and the means over landforms when all are there."""
    landforms = tuple(dict.fromkeys(run.landform or "" for run in runs))
    columns = (
        *(Column(f"{landform}_f1", f"{landform} F1") for landform in landforms),
        Column("mean_f1", "mean F1"),
        Column("mean_auprc", "mean AUPRC"),
    )
    cells: dict[tuple[str, ...], dict[str, Mapping[str, float]]] = {}
    for run in runs:
        cells.setdefault(_row_names(run), {})[run.landform or ""] = run.metrics
    rows = []
    for names, by_landform in cells.items():
        f1 = [by_landform.get(landform, {}).get("f1") for landform in landforms]
        auprc = [by_landform.get(landform, {}).get("auprc") for landform in landforms]
        complete = all(value is not None for value in [*f1, *auprc])
        means = [_mean(f1), _mean(auprc)] if complete else [None, None]
        rows.append((names, [*f1, *means]))
    return Leaderboard(TaskName.GEOLOCALIZATION, ("model", "query"), columns, rows)


def _mean(values: Sequence[float | None]) -> float:
    present = [value for value in values if value is not None]
    return sum(present) / len(present)


def write_leaderboards(boards: Sequence[Leaderboard], out_dir: Path, *, config_path: Path) -> list[Path]:
    parts = [
        "# marsbench leaderboard",
        "",
        f"From `{config_path}`. Parity variant (the reference's numbers), x100 except MedR (a rank); "
        "the best value of each column in bold. `-`: no record (failed or not run yet).",
    ]
    written = []
    for board in boards:
        parts += ["", f"## {board.title}", "", board.markdown()]
        path = out_dir / f"leaderboard-{board.task.value}.csv"
        write_text_atomic(path, board.csv())
        written.append(path)
    md = out_dir / LEADERBOARD_MD
    write_text_atomic(md, "\n".join(parts) + "\n")
    return [md, *written]

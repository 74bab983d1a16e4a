"""Leaderboards of a benchmark grid: one table per task, models x metrics, parity variant.

Pure: built from the planned runs and the records found for them, rendered for the terminal
(best per column marked `*`), Markdown (best in bold) and CSV (fractions as in the records,
for machines, unmarked).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from marsbench.cli.tables import render_table
from marsbench.files import write_text_atomic
from marsbench.schemas.jobs import TaskName
from marsbench.schemas.runs import RunRecord

if TYPE_CHECKING:
    from marsbench.cli.benchmark import PlannedRun, RunKey

PARITY = "parity"
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
class Leaderboard:
    task: TaskName
    row_headers: tuple[str, ...]
    columns: tuple[Column, ...]
    rows: list[tuple[tuple[str, ...], list[float | None]]]

    @property
    def title(self) -> str:
        return TASK_TITLES[self.task]

    def best(self) -> list[set[int]]:
        """Per column, the rows holding its best value (ties all marked)."""
        marks = []
        for i, column in enumerate(self.columns):
            present = [(row, cells[i]) for row, (_, cells) in enumerate(self.rows) if cells[i] is not None]
            if not present:
                marks.append(set())
                continue
            pick = min if column.lower_is_better else max
            best = pick(value for _, value in present)
            marks.append({row for row, value in present if value == best})
        return marks

    def _cells(self, mark: Callable[[str], str]) -> list[list[str]]:
        best = self.best()
        table = []
        for r, (names, values) in enumerate(self.rows):
            cells = list(names)
            for c, (column, value) in enumerate(zip(self.columns, values, strict=True)):
                if value is None:
                    cells.append("-")
                    continue
                text = f"{value:g}" if column.rank else f"{100 * value:.2f}"
                cells.append(mark(text) if r in best[c] else text)
            table.append(cells)
        return table

    def text(self) -> str:
        headers = [*self.row_headers, *(column.title for column in self.columns)]
        return render_table(headers, self._cells(lambda text: f"{text}*"))

    def markdown(self) -> str:
        headers = [*self.row_headers, *(column.title for column in self.columns)]
        align = ["---"] * len(self.row_headers) + ["---:"] * len(self.columns)
        lines = [headers, align, *self._cells(lambda text: f"**{text}**")]
        return "\n".join(f"| {' | '.join(cells)} |" for cells in lines)

    def csv(self) -> str:
        """Fractions as in the records (MedR a rank), full precision, no marks: for machines."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([*(h.replace(" ", "_") for h in self.row_headers), *(c.key for c in self.columns)])
        for names, values in self.rows:
            writer.writerow([*names, *("" if value is None else repr(value) for value in values)])
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


def leaderboards(planned: Sequence[PlannedRun], records: Mapping[RunKey, RunRecord]) -> list[Leaderboard]:
    """One table per task of the plan, rows in config order; a run without a record shows '-'."""
    boards = []
    for task in dict.fromkeys(run.key.task for run in planned):
        runs = [run for run in planned if run.key.task is task]
        if task is TaskName.GEOLOCALIZATION:
            boards.append(_geo_board(runs, records))
            continue
        columns = _PAIRED_COLUMNS if task is TaskName.PAIRED else _LANDFORM_COLUMNS
        headers = ("model", "caption key") if task is TaskName.PAIRED else ("model",)
        rows = []
        for run in runs:
            metrics = parity_metrics(records.get(run.key))
            names = (run.label, run.key.caption_key or "") if task is TaskName.PAIRED else (run.label,)
            rows.append((names, [metrics.get(column.key) for column in columns]))
        boards.append(Leaderboard(task, headers, columns, rows))
    return boards


def _geo_board(runs: Sequence[PlannedRun], records: Mapping[RunKey, RunRecord]) -> Leaderboard:
    """Rows (model, query mode), F1 per landform, and the means over landforms when all are there."""
    landforms = tuple(dict.fromkeys(run.key.landform or "" for run in runs))
    columns = (
        *(Column(f"{landform}_f1", f"{landform} F1") for landform in landforms),
        Column("mean_f1", "mean F1"),
        Column("mean_auprc", "mean AUPRC"),
    )
    cells: dict[tuple[str, str], dict[str, Mapping[str, float]]] = {}
    for run in runs:
        row = cells.setdefault((run.label, str(run.key.query_mode)), {})
        row[run.key.landform or ""] = parity_metrics(records.get(run.key))
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

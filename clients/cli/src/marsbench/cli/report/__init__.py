"""`marsbench report`: a leaderboard report from the run records found under a folder.

collect.py finds the records (recursively) and keeps the newest of each run; build.py turns them
into per-task leaderboards (leaderboard.py, shared with `marsbench benchmark`), notes and figures
(figures.py); markdown.py and html.py render the same content as report.md and index.html.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from marsbench.cli.errors import CommandError
from marsbench.cli.report.build import Report, build_report
from marsbench.cli.report.collect import collect
from marsbench.cli.report.html import render_page
from marsbench.cli.report.markdown import render_markdown, summary_line
from marsbench.files import write_text_atomic

REPORT_MD = "report.md"
INDEX_HTML = "index.html"
REPORT_DIR = "report"  # where demo and benchmark write the report of their out folder


@dataclass(frozen=True)
class WrittenReport:
    index: Path
    markdown: Path
    csv: list[Path]
    report: Report

    @property
    def summary(self) -> str:
        return summary_line(self.report)


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def generate_report(
    results_dir: Path, out_dir: Path, *, warn: Callable[[str], None] = _to_stderr
) -> WrittenReport:
    """Write report.md, leaderboard-<task>.csv, index.html and figures/ into `out_dir`. Record
    files that cannot be read are passed to `warn` by name (and listed in the report); no record
    at all is an error."""
    if not results_dir.is_dir():
        raise CommandError(f"results folder {results_dir} does not exist")
    collected = collect(results_dir)
    for problem in collected.unreadable:
        warn(f"marsbench report: skipped {problem.path}: {problem.reason}")
    if not collected.records:
        unreadable = f" ({len(collected.unreadable)} unreadable, see above)" if collected.unreadable else ""
        raise CommandError(f"no run records under {results_dir}{unreadable}")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = build_report(collected, results_dir, out_dir)
    csv_paths = []
    for section in report.sections:
        path = out_dir / f"leaderboard-{section.task.value}.csv"
        write_text_atomic(path, section.board.csv())
        csv_paths.append(path)
    names = [path.name for path in csv_paths]
    markdown = out_dir / REPORT_MD
    write_text_atomic(markdown, render_markdown(report, names))
    index = out_dir / INDEX_HTML
    write_text_atomic(index, render_page(report, names))
    return WrittenReport(index, markdown, csv_paths, report)


def write_report(results_dir: Path, out_dir: Path) -> Path:
    """The report of the records under `results_dir`, written into `out_dir`; the index.html path."""
    return generate_report(results_dir, out_dir).index

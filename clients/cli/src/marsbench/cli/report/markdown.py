"""report.md: the leaderboards in Markdown (best in bold), the notes, and the figures by relative link."""

from __future__ import annotations

from collections.abc import Sequence

from marsbench.cli.leaderboard import FORCED_MARK
from marsbench.cli.report.build import Report, Section

LEGEND = (
    "Parity variant (the reference's numbers) unless a table says otherwise; x100 except MedR (a rank); "
    f"the best value of each column in bold; `-`: no record. {FORCED_MARK}: forced, evaluated on an "
    "incomplete index."
)


def summary_line(report: Report) -> str:
    """How many records the report stands on, and what it left out."""
    collected = report.collected
    parts = [f"{len(collected.records)} run record(s) shown"]
    if collected.superseded_total:
        parts.append(f"{collected.superseded_total} older record(s) superseded by newer ones of the same run")
    if collected.unreadable:
        parts.append(f"{len(collected.unreadable)} unreadable record file(s) skipped")
    if collected.not_records:
        parts.append(f"{collected.not_records} other JSON file(s) passed over")
    return "; ".join(parts)


def render_markdown(report: Report, csv_files: Sequence[str]) -> str:
    stamp = report.generated_at.strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# marsbench report",
        "",
        f"Generated {stamp} from `{report.results_dir}`: {summary_line(report)}.",
        "",
        LEGEND,
    ]
    for section in report.sections:
        lines += _section(section)
    if report.collected.unreadable:
        lines += ["", "## Unreadable record files", ""]
        lines += [f"- `{problem.path}`: {problem.reason}" for problem in report.collected.unreadable]
    if csv_files:
        links = ", ".join(f"[{name}]({name})" for name in csv_files)
        lines += ["", f"Leaderboards as CSV (fractions as in the records, for machines): {links}."]
    return "\n".join(lines) + "\n"


def _section(section: Section) -> list[str]:
    lines = ["", f"## {section.title}", "", section.board.markdown()]
    if section.notes:
        lines += ["", *(f"- {note}" for note in section.notes)]
    for name, board in section.variants:
        lines += ["", f"### Variant `{name}`", "", board.markdown()]
    if section.figures:
        lines += ["", "### Figures"]
        for figure in section.figures:
            lines += ["", f"![{figure.caption}]({figure.file})", "", f"*{figure.caption}*"]
    if section.maps:
        lines += ["", "### Maps", ""]
        lines += [f"- [{figure.caption}]({figure.file})" for figure in section.maps]
    return lines

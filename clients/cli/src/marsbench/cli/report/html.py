"""index.html: one static page that works offline.

Nothing is fetched: the CSS is inline, figures are relative links to PNG files under figures/,
and every text from the records (model names, paths, notes) goes through `html.escape`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from marsbench.cli.leaderboard import Leaderboard
from marsbench.cli.report.build import FigureRef, Report, Section
from marsbench.cli.report.markdown import LEGEND, summary_line

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1.5em 2em 3em; color: #1d1d1f; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
h3 { margin-top: 1.5em; }
nav a { margin-right: 1.2em; }
.meta, .legend { color: #555; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.6em 0; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 0.3em 0.7em; }
th { background: #f4f5f7; text-align: left; white-space: nowrap; }
td.num, th.num { text-align: right; }
td.best { font-weight: 700; background: #e8f4ea; }
tbody tr:hover { background: #fafafa; }
tr.baseline td { color: #666; font-style: italic; }
ul.notes { color: #444; padding-left: 1.2em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.92em; }
.maps { display: grid; grid-template-columns: repeat(auto-fill, minmax(280px, 1fr)); gap: 0.8em; }
.maps figure { margin: 0; }
details { margin: 0.8em 0; }
summary { cursor: pointer; font-weight: 600; }
code { background: #f4f5f7; padding: 0 0.25em; border-radius: 3px; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def table(board: Leaderboard) -> str:
    """The leaderboard with the best value of each column in bold (class `best`)."""
    names = len(board.row_headers)
    head = "".join(
        f'<th class="num">{_e(title)}</th>' if i >= names else f"<th>{_e(title)}</th>"
        for i, title in enumerate(board.headers())
    )
    body = []
    for row in board.formatted():
        cells = []
        for i, cell in enumerate(row):
            classes = " ".join(c for c in ("num" if i >= names else "", "best" if cell.best else "") if c)
            attribute = f' class="{classes}"' if classes else ""
            text = f"<strong>{_e(cell.text)}</strong>" if cell.best else _e(cell.text)
            cells.append(f"<td{attribute}>{text}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    for row in board.formatted_baselines():  # the random-ranking rows: never best
        cells = [
            f'<td class="num">{_e(cell.text)}</td>' if i >= names else f"<td>{_e(cell.text)}</td>"
            for i, cell in enumerate(row)
        ]
        body.append(f'<tr class="baseline">{"".join(cells)}</tr>')
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _figure(figure: FigureRef, *, link: bool = False) -> str:
    image = f'<img src="{_e(figure.file)}" alt="{_e(figure.caption)}" loading="lazy">'
    if link:  # map thumbnails open at full size
        image = f'<a href="{_e(figure.file)}">{image}</a>'
    return f"<figure>{image}<figcaption>{_e(figure.caption)}</figcaption></figure>"


def _maps(maps: Sequence[FigureRef]) -> str:
    parts = ["<h3>Maps</h3>"]
    for group in dict.fromkeys(figure.group for figure in maps):
        figures = "".join(_figure(figure, link=True) for figure in maps if figure.group == group)
        parts.append(f'<h4>{_e(group)}</h4><div class="maps">{figures}</div>')
    return "".join(parts)


def _section(section: Section) -> str:
    parts = [f'<section id="{_e(section.anchor)}"><h2>{_e(section.title)}</h2>', table(section.board)]
    if section.notes:
        parts.append(
            '<ul class="notes">' + "".join(f"<li>{_e(note)}</li>" for note in section.notes) + "</ul>"
        )
    for name, board in section.variants:
        parts.append(f"<details><summary>Variant <code>{_e(name)}</code></summary>{table(board)}</details>")
    if section.figures:
        parts.append("<h3>Figures</h3>" + "".join(_figure(figure) for figure in section.figures))
    if section.maps:
        parts.append(_maps(section.maps))
    parts.append("</section>")
    return "".join(parts)


def render_page(report: Report, csv_files: Sequence[str]) -> str:
    stamp = report.generated_at.strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<a href="#{_e(s.anchor)}">{_e(s.title)}</a>' for s in report.sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>marsbench report</title><style>{_CSS}</style></head><body>",
        "<h1>marsbench report</h1>",
        f'<p class="meta">Generated {_e(stamp)} from <code>{_e(report.results_dir)}</code>: '
        f"{_e(summary_line(report))}.</p>",
        f'<p class="legend">{_e(LEGEND.replace("`", ""))}</p>',
        f"<nav>{nav}</nav>",
        *(_section(section) for section in report.sections),
    ]
    if report.collected.unreadable:
        items = "".join(
            f"<li><code>{_e(problem.path)}</code>: {_e(problem.reason)}</li>"
            for problem in report.collected.unreadable
        )
        parts.append(f'<section id="unreadable"><h2>Unreadable record files</h2><ul>{items}</ul></section>')
    if csv_files:
        links = ", ".join(f'<a href="{_e(name)}">{_e(name)}</a>' for name in csv_files)
        parts.append(f'<p class="meta">Leaderboards as CSV (fractions, for machines): {links}.</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"

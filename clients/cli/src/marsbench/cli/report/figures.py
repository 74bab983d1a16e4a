"""The report's figures, drawn with matplotlib's Agg canvas directly (as the evaluator's maps):
no pyplot global state, so reports can be written from threads and tests in parallel.

Every axis is labelled in the tables' units: fractions x100 (%), ranks as they are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from marsbench.schemas.runs import Curve

DPI = 110


@dataclass(frozen=True)
class Series:
    """One line: a model (and caption key) on one curve."""

    label: str
    color: str
    curve: Curve
    linestyle: str = "-"


def model_colors(labels: Sequence[str]) -> dict[str, str]:
    """One color per model, the same in every figure of the report."""
    palette = matplotlib.colormaps["tab10" if len(labels) <= 10 else "tab20"]
    # An integer indexes a listed colormap's own colors (tab10, tab20), in their order.
    return {
        label: matplotlib.colors.to_hex(palette(i % palette.N))
        for i, label in enumerate(dict.fromkeys(labels))
    }


def points(curve: Curve, name: str) -> tuple[list[float], list[float]] | None:
    """(x, y) of one named series, or None when it is missing or does not match x (a record we
    cannot plot should not end the report)."""
    values = curve.y.get(name)
    if values is None or len(values) != len(curve.x) or not values:
        return None
    return list(curve.x), list(values)


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def legend_layout(labels: Sequence[str], width: float) -> tuple[int, float]:
    """(columns, inches of height) for a legend of `labels` below plots `width` inches wide: as
    many columns as the longest label allows, so a long model name is never cut off."""
    if not labels:
        return 1, 0.0
    # About 0.06 in per character at 8 pt, plus the line sample and padding.
    column = 0.06 * max(len(label) for label in labels) + 0.7
    columns = max(1, min(len(labels), int(width // column)))
    return columns, math.ceil(len(labels) / columns) * 0.2 + 0.1


def _labels(panels: Sequence[tuple[str, Sequence[Series]]]) -> list[str]:
    return list(dict.fromkeys(line.label for _, series in panels for line in series))


def _legend(figure: Figure, axes_list: Sequence[Axes], columns: int) -> None:
    """Below the plots: one legend for all panels, each line once (a model may be missing from
    some panels, e.g. an image-only model from text queries)."""
    by_label: dict[str, Artist] = {}
    for axes in axes_list:
        for handle, label in zip(*axes.get_legend_handles_labels(), strict=True):
            by_label.setdefault(label, handle)
    if by_label:
        figure.legend(
            list(by_label.values()), list(by_label), loc="outside lower center", ncol=columns,
            fontsize=8, frameon=False,
        )  # fmt: skip


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def recall_at_k_figure(path: Path, panels: Sequence[tuple[str, Sequence[Series]]]) -> Path:
    """Paired R@k: one panel per direction (image->text, text->image), recall (%) over k on a log
    axis, one line per model and caption key."""
    width = 5.0 * max(len(panels), 1)
    columns, legend_height = legend_layout(_labels(panels), width)
    figure = _figure(width, 3.9 + legend_height)
    axes_list = figure.subplots(1, max(len(panels), 1), squeeze=False)[0]
    for axes, (title, series) in zip(axes_list, panels, strict=False):
        x_label = "k"
        for line in series:
            xy = points(line.curve, "recall")
            if xy is None:
                continue
            x_label = line.curve.x_label or x_label
            axes.plot(
                xy[0], [100 * y for y in xy[1]], color=line.color, linestyle=line.linestyle,
                label=line.label, linewidth=1.5,
            )  # fmt: skip
        axes.set_xscale("log")
        axes.set_ylim(0, 102)
        axes.set_xlabel(f"{x_label} (rank cut-off, log scale)")
        axes.set_ylabel("recall@k (%)")
        axes.set_title(title, fontsize=10)
        axes.grid(True, which="both", linewidth=0.3, alpha=0.5)
    _legend(figure, axes_list, columns)
    return _save(figure, path)


def pr_figure(path: Path, landform: str, panels: Sequence[tuple[str, Sequence[Series]]]) -> Path:
    """Geo precision-recall of one landform: one panel per query mode, precision (%) over recall
    (%) as k grows, one line per model; the dot is the best F1 on the curve. The k values a record
    samples are marked: the lines between them are the trapezoids AUPRC integrates, not measured."""
    width = 4.4 * max(len(panels), 1)
    columns, legend_height = legend_layout(_labels(panels), width)
    figure = _figure(width, 3.8 + legend_height)
    axes_list = figure.subplots(1, max(len(panels), 1), squeeze=False)[0]
    for axes, (mode, series) in zip(axes_list, panels, strict=False):
        for line in series:
            precision, recall = points(line.curve, "precision"), points(line.curve, "recall")
            if precision is None or recall is None:
                continue
            p = [100 * v for v in precision[1]]
            r = [100 * v for v in recall[1]]
            axes.plot(
                r, p, color=line.color, linestyle=line.linestyle, label=line.label, linewidth=1.2,
                marker=".", markersize=3,
            )  # fmt: skip
            f1 = [2 * a * b / (a + b) if a + b > 0 else 0.0 for a, b in zip(p, r, strict=True)]
            best = max(range(len(f1)), key=f1.__getitem__)
            axes.plot([r[best]], [p[best]], marker="o", markersize=4, color=line.color)
        axes.set_xlim(0, 102)
        axes.set_ylim(bottom=0)
        axes.set_xlabel("recall (%)")
        axes.set_ylabel("precision (%)")
        axes.set_title(f"{landform} \u00b7 {mode} query", fontsize=10)
        axes.grid(True, linewidth=0.3, alpha=0.5)
    _legend(figure, axes_list, columns)
    return _save(figure, path)


# Beyond this many bars a grouped bar chart is unreadable: a models x classes heatmap instead.
MAX_BARS = 60


def per_class_figure(
    path: Path, classes: Sequence[str], bars: Sequence[tuple[str, str, Mapping[str, float]]]
) -> Path:
    """Landform AP per class and model; `bars` are (model label, color, AP by class). Grouped bars
    (one group per class, one bar per model) while they fit, else a heatmap."""
    if len(classes) * len(bars) > MAX_BARS:
        return _per_class_heatmap(path, classes, bars)
    n_models = max(len(bars), 1)
    width = min(max(6.0, 0.9 + 0.16 * len(classes) * (n_models + 1)), 20.0)
    columns, legend_height = legend_layout([label for label, _, _ in bars], width)
    figure = _figure(width, 4.4 + legend_height)
    axes = figure.add_subplot()
    bar_width = 0.8 / n_models
    for i, (label, color, by_class) in enumerate(bars):
        x = [c + (i - (n_models - 1) / 2) * bar_width for c in range(len(classes))]
        heights = [100 * by_class[name] if name in by_class else math.nan for name in classes]
        axes.bar(x, heights, width=bar_width, color=color, label=label)
    rotated = len(classes) > 4  # long class names side by side would overlap
    axes.set_xticks(
        range(len(classes)), classes, rotation=40 if rotated else 0, ha="right" if rotated else "center"
    )
    axes.set_xlim(-0.6, len(classes) - 0.4)
    axes.set_ylim(0, 102)
    axes.set_xlabel("landform class")
    axes.set_ylabel("AP (%)")
    axes.set_title("Average precision per class (parity variant)", fontsize=10)
    axes.grid(True, axis="y", linewidth=0.3, alpha=0.5)
    _legend(figure, [axes], columns)
    return _save(figure, path)


def _per_class_heatmap(
    path: Path, classes: Sequence[str], bars: Sequence[tuple[str, str, Mapping[str, float]]]
) -> Path:
    """Models (rows) x classes (columns), AP (%) as color and, while legible, as numbers."""
    grid = [
        [100 * by_class[name] if name in by_class else math.nan for name in classes]
        for _, _, by_class in bars
    ]
    longest = max(len(label) for label, _, _ in bars)
    width = min(max(6.0, 0.07 * longest + 1.5 + 0.42 * len(classes)), 24.0)
    height = min(max(3.0, 2.0 + 0.32 * len(bars) + 0.06 * max(len(c) for c in classes)), 16.0)
    figure = _figure(width, height)
    axes = figure.add_subplot()
    image = axes.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=100, interpolation="nearest")
    if len(classes) * len(bars) <= 600:
        for row, values in enumerate(grid):
            for column, value in enumerate(values):
                if not math.isnan(value):
                    shade = "black" if value > 60 else "white"  # legible on viridis' light and dark ends
                    axes.text(column, row, f"{value:.0f}", ha="center", va="center", fontsize=6, color=shade)
    axes.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(len(bars)), [label for label, _, _ in bars], fontsize=8)
    axes.set_xlabel("landform class")
    axes.set_title("Average precision per class (parity variant), AP (%)", fontsize=10)
    figure.colorbar(image, ax=axes, label="AP (%)", fraction=0.04, pad=0.01)
    return _save(figure, path)

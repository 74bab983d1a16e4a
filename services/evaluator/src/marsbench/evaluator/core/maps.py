"""Figures for run records: the geo-localization map of one run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_MARGIN_DEG = 2.0


@dataclass(frozen=True)
class _Layer:
    """One set of points on the map and how they are drawn (unset colours: matplotlib's)."""

    points: np.ndarray
    size: float
    marker: str
    label: str
    color: str | None = None
    facecolors: str | None = None
    edgecolors: str | None = None


def _extent(*point_sets: np.ndarray) -> tuple[float, float, float, float]:
    points = (
        np.concatenate([p for p in point_sets if len(p)], axis=0) if any(len(p) for p in point_sets) else None
    )
    if points is None:
        return -180.0, 180.0, -90.0, 90.0
    lon_min, lat_min = points.min(axis=0) - _MARGIN_DEG
    lon_max, lat_max = points.max(axis=0) + _MARGIN_DEG
    return max(lon_min, -180.0), min(lon_max, 180.0), max(lat_min, -90.0), min(lat_max, 90.0)


def draw_geo_map(
    path: Path,
    *,
    tiles_lonlat: np.ndarray,
    tile_hit: np.ndarray,
    gt_lonlat: np.ndarray,
    gt_covered: np.ndarray,
    title: str,
) -> Path:
    """Catalogue points (covered / missed) and the retrieved tiles up to the best k (hit / miss),
    in lon/lat degrees. Uses the Agg canvas directly: no global pyplot state, safe in threads."""
    figure = Figure(figsize=(10, 5.5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    tiles = np.asarray(tiles_lonlat, dtype=float).reshape(-1, 2)
    gt = np.asarray(gt_lonlat, dtype=float).reshape(-1, 2)
    hit = np.asarray(tile_hit, dtype=bool)
    covered = np.asarray(gt_covered, dtype=bool)
    n_hit, n_covered = int(hit.sum()), int(covered.sum())
    layers = [
        _Layer(tiles[~hit], 10, "s", f"retrieved tile, no site near ({len(hit) - n_hit})", color="#c9c9c9"),
        _Layer(tiles[hit], 12, "s", f"retrieved tile near a site ({n_hit})", color="#2b8cbe"),
        _Layer(gt[~covered], 36, "x", f"catalogue site missed ({len(covered) - n_covered})", color="#d7301f"),
        _Layer(gt[covered], 36, "o", f"catalogue site found ({n_covered})", facecolors="none",
               edgecolors="#1a9850"),
    ]  # fmt: skip
    for layer in layers:
        if len(layer.points):
            axes.scatter(
                layer.points[:, 0],
                layer.points[:, 1],
                s=layer.size,
                marker=layer.marker,
                label=layer.label,
                color=layer.color,
                facecolors=layer.facecolors,
                edgecolors=layer.edgecolors,
            )
    lon_min, lon_max, lat_min, lat_max = _extent(tiles, gt)
    axes.set_xlim(lon_min, lon_max)
    axes.set_ylim(lat_min, lat_max)
    axes.set_aspect("equal")
    axes.set_xlabel("longitude (deg E)")
    axes.set_ylabel("latitude (deg N)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, linewidth=0.3, alpha=0.5)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path

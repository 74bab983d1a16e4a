"""Drawers for the seven landform classes, each a change to a `Canvas` height or albedo field.

Every drawer takes a `Feature` (where, how big, which way, how many) and draws it; the same
`Feature` is what captions describe, so an image and its caption cannot disagree. Sizes are
fractions of the image width; angles are the direction of the long axis or of downslope flow,
in radians, measured in image coordinates (0 = east, pi/2 = south, since y grows downwards).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._terrain import Canvas, fractal_noise

LANDFORM_CLASSES: tuple[str, ...] = (
    "crater",
    "yardang",
    "alluvial_fan",
    "pitted_cone",
    "glacier-like_form",
    "landslide",
    "slope_streak",
)


@dataclass(frozen=True, slots=True)
class Feature:
    """One drawn landform: its class, centre (cx, cy in [0, 1]), size, direction and count."""

    kind: str
    cx: float
    cy: float
    size: float
    angle: float
    count: int


def _smoothstep(edge0: float, edge1: float, v: np.ndarray) -> np.ndarray:
    t = np.clip((v - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _local(canvas: Canvas, cx: float, cy: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates along (a) and across (b) the direction `angle`, relative to (cx, cy)."""
    dx, dy = canvas.x - cx, canvas.y - cy
    cos, sin = float(np.cos(angle)), float(np.sin(angle))
    return dx * cos + dy * sin, -dx * sin + dy * cos


def _window(canvas: Canvas, cx: float, cy: float, reach: float) -> tuple[slice, slice]:
    """The rows and columns within `reach` of (cx, cy): small features only touch those."""
    n = canvas.size
    lo_x, hi_x = int(max(0, (cx - reach) * n)), int(min(n, (cx + reach) * n + 1))
    lo_y, hi_y = int(max(0, (cy - reach) * n)), int(min(n, (cy + reach) * n + 1))
    return slice(lo_y, max(lo_y, hi_y)), slice(lo_x, max(lo_x, hi_x))


def add_crater(canvas: Canvas, cx: float, cy: float, radius: float) -> None:
    """A fresh simple crater: parabolic bowl, raised rim, ejecta falling off as r^-3."""
    win = _window(canvas, cx, cy, 4.0 * radius)
    r = np.hypot(canvas.x[win] - cx, canvas.y[win] - cy) / radius
    depth, rim = 0.4 * radius, 0.08 * radius
    inside = depth * (r * r - 1.0) + rim
    outside = rim / np.maximum(r, 1.0) ** 3
    canvas.height[win] += np.where(r < 1.0, inside, outside)


def draw_crater(canvas: Canvas, rng: np.random.Generator, f: Feature) -> None:
    """One main crater of diameter `size`, plus `count - 1` smaller ones nearby."""
    add_crater(canvas, f.cx, f.cy, f.size / 2.0)
    for _ in range(f.count - 1):
        ang = rng.uniform(0, 2 * np.pi)
        dist = f.size / 2.0 + rng.uniform(0.05, 0.2)
        # Kept inside the frame: the caption counts them.
        x = float(np.clip(f.cx + dist * np.cos(ang), 0.05, 0.95))
        y = float(np.clip(f.cy + dist * np.sin(ang), 0.05, 0.95))
        add_crater(canvas, x, y, f.size * rng.uniform(0.12, 0.3))


def draw_yardang(canvas: Canvas, rng: np.random.Generator, f: Feature) -> None:
    """`count` parallel streamlined ridges, blunt upwind and tapering downwind, along `angle`."""
    a, b = _local(canvas, f.cx, f.cy, f.angle)
    spacing = f.size / max(f.count, 1)
    for k in range(f.count):
        b0 = (k - (f.count - 1) / 2.0) * spacing + rng.normal(0, 0.1 * spacing)
        length = f.size * rng.uniform(0.9, 1.6)
        a0 = rng.normal(0, 0.1 * f.size)
        width = spacing * rng.uniform(0.22, 0.34)
        u = (a - a0) / length  # -0.5 upwind end .. 0.5 downwind tip
        taper = np.sqrt(np.clip(0.5 - u, 0.0, 1.0))
        across = np.exp(-(((b - b0) / (width * taper + 1e-4)) ** 2))
        ends = _smoothstep(-0.5, -0.42, u) * (u < 0.5)
        canvas.height += 0.5 * width * across * ends


def draw_alluvial_fan(canvas: Canvas, rng: np.random.Generator, f: Feature) -> None:
    """A smooth bright cone of sediment spreading from a mountain front, with faint radial channels."""
    apex_x = f.cx - 0.4 * f.size * np.cos(f.angle)
    apex_y = f.cy - 0.4 * f.size * np.sin(f.angle)
    a, b = _local(canvas, apex_x, apex_y, f.angle)
    rho = np.hypot(a, b)
    phi = np.arctan2(b, a)
    half_angle = rng.uniform(0.5, 0.85)
    radius = 0.85 * f.size
    to_side = rho * np.sin(np.clip(half_angle - np.abs(phi), 0.0, np.pi / 2))
    mask = _smoothstep(0.0, 0.3, 1.0 - rho / radius) * _smoothstep(0.0, 0.08, to_side)
    cone = 0.06 * radius * (1.0 - rho / radius) * mask
    channels = 0.004 * radius * np.sin(phi * rng.uniform(18, 26) / half_angle) * (rho / radius) * mask
    relief = 1.0 + 0.8 * fractal_noise(rng, canvas.size, 3.2)
    upland = 0.09 * _smoothstep(-0.02, 0.15, -a) * relief
    canvas.height += cone + channels + upland
    canvas.albedo *= 1.0 + 0.35 * mask


def draw_pitted_cone(canvas: Canvas, rng: np.random.Generator, f: Feature) -> None:
    """A cluster of `count` small conical mounds, each with a summit pit."""
    for x0, y0 in _scatter(rng, f.cx, f.cy, f.size / 2.0, f.count, min_dist=0.1):
        cone_r = rng.uniform(0.06, 0.1)
        win = _window(canvas, x0, y0, cone_r)
        r = np.hypot(canvas.x[win] - x0, canvas.y[win] - y0) / cone_r
        cone = 0.8 * cone_r * np.clip(1.0 - r, 0.0, None) ** 1.2
        pit = 0.5 * cone_r * np.exp(-((r / 0.3) ** 2))
        canvas.height[win] += cone - pit


def _scatter(
    rng: np.random.Generator, cx: float, cy: float, radius: float, n: int, min_dist: float
) -> list[tuple[float, float]]:
    """Exactly n points in a disc, kept apart by rejection so clusters read as separate objects.

    When the disc is too crowded for `min_dist`, the distance shrinks until all n fit: the
    caption states the count, so the drawing must show that many.
    """
    points: list[tuple[float, float]] = []
    while len(points) < n:
        for _ in range(30):
            rad, ang = radius * np.sqrt(rng.uniform(0, 1)), rng.uniform(0, 2 * np.pi)
            p = (cx + rad * np.cos(ang), cy + rad * np.sin(ang))
            if all(np.hypot(p[0] - q[0], p[1] - q[1]) >= min_dist for q in points):
                points.append(p)
                break
        else:
            min_dist *= 0.8
    return points


def draw_glacier_like_form(canvas: Canvas, rng: np.random.Generator, f: Feature) -> None:
    """A lobate tongue flowing out of an alcove, with arcuate ridges and flow lineations."""
    a, b = _local(canvas, f.cx, f.cy, f.angle)
    length = f.size
    half_w = length * rng.uniform(0.2, 0.3) * (0.7 + 0.5 * np.clip((a + length / 2) / length, 0, 1))
    tip = length / 2.0 - half_w
    ends = np.maximum(a - tip, 0.0) / half_w
    inside = 1.0 - np.sqrt((b / half_w) ** 2 + ends**2)
    inside = np.where(a < -length / 2.0, -1.0, inside)
    mask = _smoothstep(0.0, 0.2, inside)
    thickness = 0.05 * length * mask
    arcs = a - 0.6 * b * b / (length * 0.3)
    ridges = 0.008 * length * np.sin(2 * np.pi * arcs / (length * rng.uniform(0.07, 0.1))) * mask
    lines = 0.004 * length * np.sin(2 * np.pi * b / (length * 0.05)) * mask
    out = np.sqrt(np.maximum(np.abs(b) - half_w, 0.0) ** 2 + np.maximum(-length / 2 - a, 0.0) ** 2)
    walls = 0.1 * _smoothstep(0.0, 0.12, out) * _smoothstep(length * 0.3, -length * 0.5, a)
    canvas.height += thickness + ridges + lines + walls


def draw_landslide(canvas: Canvas, rng: np.random.Generator, f: Feature) -> None:
    """A rough plateau cut by an amphitheatre scarp, with a grooved lobate deposit below it."""
    a, b = _local(canvas, f.cx, f.cy, f.angle)
    half_w0 = f.size * rng.uniform(0.18, 0.25)
    edge = -0.25 * f.size - 0.2 * f.size * np.exp(-((b / (1.3 * half_w0)) ** 2))
    rough = 1.0 + 0.25 * fractal_noise(rng, canvas.size, 2.2)
    plateau = 0.14 * _smoothstep(0.0, 0.04, edge - a) * rough
    runout = f.size * rng.uniform(0.75, 0.95)
    run = np.clip(a - edge, 0.0, None)
    half_w = half_w0 * (1.0 + 1.2 * run / f.size)
    toe = np.maximum(run - 0.6 * runout, 0.0) / (0.4 * runout)
    mask = _smoothstep(0.0, 0.15, 1.0 - np.hypot(b / half_w, toe)) * (a > edge)
    grooves = 0.75 + 0.25 * np.sin(2 * np.pi * (b / half_w) * rng.uniform(3, 5) + rng.uniform(0, 6.3))
    hummocks = 1.0 + 0.6 * fractal_noise(rng, canvas.size, 2.0) * (run / runout)
    deposit = 0.03 * f.size * mask * grooves * hummocks
    canvas.height += plateau + deposit


def draw_slope_streak(canvas: Canvas, rng: np.random.Generator, f: Feature) -> None:
    """Dark narrow streaks running downslope on a steep flank (the flank drops along `angle`)."""
    a, b = _local(canvas, f.cx, f.cy, f.angle)
    canvas.height += -0.15 * np.tanh(a / (0.3 * f.size))
    darkening = np.zeros_like(canvas.albedo)
    for _ in range(f.count):
        b0 = rng.uniform(-0.45, 0.45) + 0.006 * np.sin(a * rng.uniform(8, 16) + rng.uniform(0, 6.3))
        start = rng.uniform(-0.5, -0.2) * f.size
        length = f.size * rng.uniform(0.5, 1.0)
        u = (a - start) / length
        width = rng.uniform(0.008, 0.016) * (1.0 + 1.5 * np.clip(u, 0, 1))
        streak = np.exp(-(((b - b0) / width) ** 2)) * _smoothstep(0.0, 0.05, u) * _smoothstep(1.0, 0.8, u)
        darkening = np.maximum(darkening, rng.uniform(0.45, 0.7) * streak)
    canvas.albedo *= 1.0 - darkening


Drawer = Callable[[Canvas, np.random.Generator, Feature], None]

DRAWERS: dict[str, Drawer] = {
    "crater": draw_crater,
    "yardang": draw_yardang,
    "alluvial_fan": draw_alluvial_fan,
    "pitted_cone": draw_pitted_cone,
    "glacier-like_form": draw_glacier_like_form,
    "landslide": draw_landslide,
    "slope_streak": draw_slope_streak,
}

# Size (fraction of the image) and count ranges that keep each class recognisable.
_SIZE_RANGE: dict[str, tuple[float, float]] = {
    "crater": (0.3, 0.7),
    "yardang": (0.5, 0.85),
    "alluvial_fan": (0.5, 0.8),
    "pitted_cone": (0.35, 0.7),
    "glacier-like_form": (0.6, 0.9),
    "landslide": (0.55, 0.85),
    "slope_streak": (0.5, 0.9),
}
_COUNT_RANGE: dict[str, tuple[int, int]] = {
    "crater": (1, 4),
    "yardang": (4, 9),
    "alluvial_fan": (1, 1),
    "pitted_cone": (3, 9),
    "glacier-like_form": (1, 1),
    "landslide": (1, 1),
    "slope_streak": (3, 9),
}


def sample_feature(
    rng: np.random.Generator,
    kind: str,
    *,
    center: tuple[float, float] | None = None,
    scale: float = 1.0,
) -> Feature:
    """Draw the free parameters of one landform; `scale` shrinks it to share an image."""
    lo, hi = _SIZE_RANGE[kind]
    cmin, cmax = _COUNT_RANGE[kind]
    cx, cy = center if center is not None else tuple(rng.uniform(0.38, 0.62, 2))
    return Feature(
        kind=kind,
        cx=float(cx),
        cy=float(cy),
        size=float(rng.uniform(lo, hi) * scale),
        angle=float(rng.uniform(-np.pi, np.pi)),
        count=int(rng.integers(cmin, cmax + 1)),
    )


def draw(canvas: Canvas, rng: np.random.Generator, feature: Feature) -> None:
    DRAWERS[feature.kind](canvas, rng, feature)

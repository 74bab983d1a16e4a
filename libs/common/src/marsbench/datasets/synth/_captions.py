"""Captions that say what a synthetic image shows: landform, size, place, direction, count.

Three styles, one per caption key of the published pairs: `ori_caption` is a terse label (as
the original source titles are), `refined_caption` a full sentence, `qwen3_fused_caption` a
differently ordered, denser description. All three are derived from the same `Feature`s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ._landforms import Feature
from ._terrain import TerrainStyle

_NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_COMPASS8 = ("east", "southeast", "south", "southwest", "west", "northwest", "north", "northeast")
_AXES4 = ("east-west", "northwest-southeast", "north-south", "northeast-southwest")
_ROWS = ("upper", "middle", "lower")
_COLS = ("left", "center", "right")

# Short labels in the style of the original captions.
_LABELS: dict[str, tuple[str, str]] = {
    "crater": ("Impact crater", "Impact craters"),
    "yardang": ("Yardang", "Yardangs"),
    "alluvial_fan": ("Alluvial fan", "Alluvial fans"),
    "pitted_cone": ("Pitted cone", "Pitted cones"),
    "glacier-like_form": ("Glacier-like form", "Glacier-like forms"),
    "landslide": ("Landslide", "Landslides"),
    "slope_streak": ("Slope streak", "Slope streaks"),
}


def number_word(n: int) -> str:
    return _NUMBERS[n] if 0 <= n < len(_NUMBERS) else str(n)


def size_word(size: float) -> str:
    if size < 0.3:
        return "small"
    return "medium-sized" if size < 0.55 else "large"


def place_name(cx: float, cy: float) -> str:
    """'upper left', 'center', 'right', 'top', ... from a 3 x 3 grid of the frame."""
    row = _ROWS[min(2, max(0, int(cy * 3)))]
    col = _COLS[min(2, max(0, int(cx * 3)))]
    if row == "middle":
        return col
    if col == "center":
        return "top" if row == "upper" else "bottom"
    return f"{row} {col}"


def position_phrase(cx: float, cy: float) -> str:
    """The place with its preposition: 'in the upper left', 'on the right', 'at the top'."""
    place = place_name(cx, cy)
    if place in ("left", "right"):
        return f"on the {place}"
    if place in ("top", "bottom"):
        return f"at the {place}"
    return f"in the {place}"


def direction_word(angle: float) -> str:
    """Compass direction of travel for an image angle (0 = east, pi/2 = south)."""
    return _COMPASS8[round(angle / (math.pi / 4)) % 8]


def axis_word(angle: float) -> str:
    """Trend of an undirected axis (yardangs), e.g. 'northeast-southwest'."""
    return _AXES4[round(angle / (math.pi / 4)) % 4]


def terrain_phrase(style: TerrainStyle) -> str:
    """'dark-toned, smooth plains', 'rough, hummocky terrain', 'bright, gently rolling plains'."""
    tone = ["dark-toned"] if style.tone < 0.45 else (["bright"] if style.tone > 0.6 else [])
    if style.roughness < 0.005:
        relief, noun = ["smooth"], "plains"
    elif style.roughness < 0.009:
        relief, noun = ["gently rolling"], "plains"
    else:
        relief, noun = ["rough", "hummocky"], "terrain"
    return ", ".join(tone + relief) + " " + noun


def feature_phrase(f: Feature) -> str:
    """A noun phrase describing one feature, with its size, count and direction."""
    size, n = size_word(f.size), f.count
    if f.kind == "crater":
        if n == 1:
            return f"a {size} impact crater"
        return f"a {size} impact crater with {number_word(n - 1)} smaller craters nearby"
    if f.kind == "yardang":
        return f"a {size} field of {number_word(n)} yardangs trending {axis_word(f.angle)}"
    if f.kind == "alluvial_fan":
        return f"a {size} alluvial fan spreading {direction_word(f.angle)} from a mountain front"
    if f.kind == "pitted_cone":
        return f"a {size} cluster of {number_word(n)} pitted cones"
    if f.kind == "glacier-like_form":
        return f"a {size} glacier-like form flowing {direction_word(f.angle)} out of an alcove"
    if f.kind == "landslide":
        return f"a {size} landslide below a scarp, running out to the {direction_word(f.angle)}"
    if f.kind == "slope_streak":
        return f"{number_word(n)} dark slope streaks running {direction_word(f.angle)} down a slope"
    raise ValueError(f"unknown landform kind {f.kind!r}")


def ori_caption(features: Sequence[Feature]) -> str:
    labels = [_LABELS[f.kind][f.count > 1] for f in features]
    return labels[0] if len(labels) == 1 else f"{labels[0]} and {labels[1].lower()}"


def refined_caption(features: Sequence[Feature], style: TerrainStyle) -> str:
    parts = [f"{feature_phrase(f)} {position_phrase(f.cx, f.cy)}" for f in features]
    body = parts[0] if len(parts) == 1 else f"{parts[0]}, and {parts[1]}"
    return f"A CTX image of {terrain_phrase(style)} on Mars showing {body}."


def fused_caption(features: Sequence[Feature], style: TerrainStyle) -> str:
    parts = [f"{place_name(f.cx, f.cy)}: {feature_phrase(f)}" for f in features]
    head = f"Grayscale orbital view of Mars, {terrain_phrase(style)}, lit from the west"
    return "; ".join([head, *parts]) + "."

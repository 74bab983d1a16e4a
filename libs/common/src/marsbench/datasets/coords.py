"""Tile names of the global geo-localization set (Task 3) and the coordinates they encode.

A tile is named by the longitude and latitude of its minimum (south-west) corner:
`E12_4_N_3_2.png` is lon 12.4, lat -3.2 and `E_12_4_N3_2.png` is lon -12.4, lat 3.2. The
decimal point is written as `_`, and a minus sign as a leading `_`. The scored coordinate is
exactly that corner, not the tile centre.
"""

from __future__ import annotations

import math
import re

# The protocol's pattern. Digits are ASCII only: Python's `\d` would also accept other
# scripts' digits, which no tile builder writes.
TILE_NAME_PATTERN = re.compile(r"^E(_?)([0-9]+_[0-9]+)_N(_?)([0-9]+_[0-9]+)\.png$")
TILE_NAME_FORM = "E[_]<deg>_<frac>_N[_]<deg>_<frac>.png"
# The published tiles are 0.2 degrees wide: one decimal place identifies a corner.
DEFAULT_DECIMALS = 1


class TileNameError(ValueError):
    """A file name that does not encode a tile corner."""


def _degrees(sign: str, digits: str) -> float:
    # float("12.4") exactly as the reference computes it, then negated: negation is exact, so
    # "_12_4" is bit-identical to the reference's -1 * 12.4 (and "_0_0" gives -0.0, as there).
    value = float(digits.replace("_", "."))
    return -value if sign else value


def parse_tile_name(name: str) -> tuple[float, float]:
    """(lon, lat) of a tile's minimum corner from its file name (a bare name, not a path)."""
    match = TILE_NAME_PATTERN.match(name)
    if match is None:
        raise TileNameError(f"tile name {name!r} does not match {TILE_NAME_FORM}")
    lon_sign, lon_digits, lat_sign, lat_digits = match.groups()
    return _degrees(lon_sign, lon_digits), _degrees(lat_sign, lat_digits)


def _field(value: float, decimals: int) -> str:
    # Formatted as the tile builder formats it: fixed decimals, then "." and "-" both become
    # "_". So -0.0, or anything that rounds to it, is written "_0_0" (as the builder would).
    return f"{value:.{decimals}f}".replace(".", "_").replace("-", "_")


def tile_name(lon: float, lat: float, decimals: int = DEFAULT_DECIMALS) -> str:
    """The file name of the tile whose minimum corner is (lon, lat); inverse of `parse_tile_name`."""
    if decimals < 1:
        # Without a fractional part the name would not match the pattern the readers parse.
        raise ValueError(f"decimals must be at least 1, got {decimals}")
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise ValueError(f"tile corner must be finite, got lon={lon!r}, lat={lat!r}")
    return f"E{_field(lon, decimals)}_N{_field(lat, decimals)}.png"

"""Cells and names of the geo-localization tiles: pure functions, no GDAL.

The reference (data_processing/geolocalization/build_tiles.py and cut.py) takes every `.tif` under
the mosaic folder, reads the minimum corner of its 4 x 4 degree extent from the file name
(`MurrayLab_CTX_V01_E-004_N-08_Mosaic.tif`: lon -4, lat -8), leaves out files whose latitude is
beyond `max_abs_lat` (the southern edge's latitude plus 4 for southern files), and cuts the extent
into `delta_deg` cells numbered row (latitude) by column (longitude) from that corner. A cell is
named by its minimum corner with the protocol's rule (`marsbench.datasets.coords.tile_name`);
the corner is computed as the reference computes it, `start + index * delta`, in floating point.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from marsbench.datasets.coords import tile_name

# build_tiles.py passes width_deg=4.0 and height_deg=4.0 for every mosaic file.
SOURCE_EXTENT_DEG = 4.0
DEFAULT_DELTA_DEG = 0.2
DEFAULT_IMAGE_SIZE = 512
DEFAULT_THUMB_SIZE = 512
DEFAULT_MAX_ABS_LAT = 80.0
DEFAULT_SHARD_SIZE = 1000
SOURCE_SUFFIX = ".tif"  # compared case-insensitively, as collect_tif_files does
_CORNER_PATTERN = re.compile(r"[EN]-?\d+")


class SourceNameError(ValueError):
    """A mosaic file name without its E<lon>_N<lat> corner."""


@dataclass(frozen=True, slots=True)
class Cell:
    """One tile: its row and column in the source, its lon/lat bounds and its file name."""

    row: int
    col: int
    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float
    name: str


def parse_source_corner(file_name: str) -> tuple[int, int]:
    """(lon, lat) of a mosaic file's minimum corner, as cut.py's parse_filename_corner reads it."""
    base = Path(file_name).name
    matches = _CORNER_PATTERN.findall(base.upper())
    if len(matches) != 2:
        raise SourceNameError(f"no E<lon>_N<lat> corner in mosaic file name {base!r}")
    lon: int | None = None
    lat: int | None = None
    for match in matches:
        value = int(match.lstrip("EN-"))
        signed = -value if match[1:2] == "-" else value
        if match.startswith("E"):
            lon = signed
        else:
            lat = signed
    if lon is None or lat is None:
        raise SourceNameError(f"no E<lon>_N<lat> corner in mosaic file name {base!r}")
    return lon, lat


def source_beyond_latitude(start_lat: float, max_abs_lat: float = DEFAULT_MAX_ABS_LAT) -> bool:
    """build_tiles.py's filter: southern files are judged by their northern edge (start + 4)."""
    edge = start_lat + SOURCE_EXTENT_DEG if start_lat < 0 else start_lat
    return abs(edge) >= max_abs_lat


def name_decimals(delta_deg: float) -> int:
    """Decimal places of the cell names (cut.py: ceil(-log10(delta)), at least 0)."""
    if not (math.isfinite(delta_deg) and delta_deg > 0):
        raise ValueError(f"delta_deg must be a positive number, got {delta_deg!r}")
    decimals = max(0, math.ceil(-math.log10(delta_deg)))
    if decimals < 1:
        # The protocol's name pattern needs a fractional part; the readers could not parse these.
        raise ValueError(f"delta_deg must be below 1 degree for parseable tile names, got {delta_deg!r}")
    return decimals


def source_cells(
    start_lon: float,
    start_lat: float,
    delta_deg: float = DEFAULT_DELTA_DEG,
    width_deg: float = SOURCE_EXTENT_DEG,
    height_deg: float = SOURCE_EXTENT_DEG,
) -> list[Cell]:
    """The cells of one mosaic file, sorted by file name (the order the reference shards them in)."""
    decimals = name_decimals(delta_deg)
    n_cols = math.ceil(width_deg / delta_deg)
    n_rows = math.ceil(height_deg / delta_deg)
    cells = []
    for row in range(n_rows):
        for col in range(n_cols):
            min_lon = start_lon + col * delta_deg
            max_lon = min(min_lon + delta_deg, start_lon + width_deg)
            min_lat = start_lat + row * delta_deg
            max_lat = min(min_lat + delta_deg, start_lat + height_deg)
            cells.append(
                Cell(row, col, min_lon, min_lat, max_lon, max_lat, tile_name(min_lon, min_lat, decimals))
            )
    cells.sort(key=lambda cell: cell.name)
    return cells


def shard_chunks(cells: Sequence[Cell], shard_size: int = DEFAULT_SHARD_SIZE) -> Iterator[list[Cell]]:
    """Consecutive runs of `shard_size` cells (build_tiles.py's --wds-shard-size), in name order."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    for start in range(0, len(cells), shard_size):
        yield list(cells[start : start + shard_size])


def variant_name(image_size: int = DEFAULT_IMAGE_SIZE, delta_deg: float = DEFAULT_DELTA_DEG) -> str:
    """`image_size_512_delta_0.2`: build_tiles.py's folder name (Python's float repr of delta)."""
    return f"image_size_{image_size}_delta_{delta_deg}"


def shard_file_name(index: int) -> str:
    return f"{index:06d}.tar"

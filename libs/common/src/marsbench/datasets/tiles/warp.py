"""One tile from one mosaic file, as the reference's cut.py and thumb_gen.py make it.

cut.py transforms the cell's lon/lat corners from the Mars sphere (`+proj=longlat +a=3396190
+b=3396190`) into the mosaic file's own projection (the CTX mosaic's tiles are equirectangular
on that sphere), then warps that box with `gdal.Warp(format="PNG", outputBounds=box, width=512,
height=round(512 * box_height / box_width), resampleAlg=bilinear, dstNodata=0)`. thumb_gen.py
opens the PNG with PIL, converts it to RGB and resizes it to 512 x 512 (bicubic), saved as PNG
with optimize=True. Here the same warp runs through rasterio's GDAL (a warped VRT, as gdal.Warp's
PNG output uses), and the same PIL calls follow; the PNG in between is skipped (a PNG stores
the 8-bit samples losslessly, so PIL reads back exactly what the warp wrote).
"""

from __future__ import annotations

import io

import numpy as np
from affine import Affine
from PIL import Image
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform

from marsbench.datasets.tiles.grid import Cell

MARS_SPHERE_RADIUS_M = 3396190.0
MARS_LONLAT = CRS.from_proj4(
    f"+proj=longlat +a={MARS_SPHERE_RADIUS_M:.0f} +b={MARS_SPHERE_RADIUS_M:.0f} +no_defs"
)
DST_NODATA = 0


class TileError(ValueError):
    """A mosaic file the tiles cannot be cut from (no projection, unsupported sample type)."""


Bounds = tuple[float, float, float, float]


def cell_bounds(cell: Cell, crs: CRS) -> Bounds:
    """(x_min, y_min, x_max, y_max) of the cell in the mosaic's projection, corners only (as cut.py)."""
    xs, ys = transform(MARS_LONLAT, crs, [cell.min_lon, cell.max_lon], [cell.min_lat, cell.max_lat])
    x_min, x_max = sorted((xs[0], xs[1]))
    y_min, y_max = sorted((ys[0], ys[1]))
    return x_min, y_min, x_max, y_max


def warp_height(bounds: Bounds, image_size: int) -> int | None:
    """The warped height in pixels (width is `image_size`), or None for an empty box (cut.py skips it)."""
    width_m = abs(bounds[2] - bounds[0])
    height_m = abs(bounds[3] - bounds[1])
    if width_m <= 0 or height_m <= 0:
        return None
    return round(image_size * (height_m / width_m))


def box_transform(bounds: Bounds, width: int, height: int) -> Affine:
    """The geotransform gdal.Warp derives from outputBounds, width and height (rasterio's from_bounds)."""
    x_min, y_min, x_max, y_max = bounds
    return Affine((x_max - x_min) / width, 0.0, x_min, 0.0, (y_min - y_max) / height, y_max)


def warp_box(src: DatasetReader, bounds: Bounds, width: int, height: int) -> np.ndarray:
    """gdal.Warp of the box into the source's own projection: (bands, height, width), nodata 0."""
    if src.crs is None:
        raise TileError(f"{src.name} has no projection")
    if len(set(src.dtypes)) != 1 or src.dtypes[0] != "uint8":
        raise TileError(
            f"{src.name}: only 8-bit mosaics are supported (sample types {sorted(set(src.dtypes))})"
        )
    # gdal.Warp to PNG (a format without Create) warps through a warped VRT that PNG's CreateCopy
    # reads block by block; a warped VRT here does the same. An in-memory warp (rasterio's
    # reproject, gdal.Warp to MEM) rounds differently where a bilinear value is within ~1e-12 of
    # a half: on the parity mosaic, 1 pixel in 10^8 came out 1 lower that way.
    with WarpedVRT(
        src,
        crs=src.crs,
        transform=box_transform(bounds, width, height),
        width=width,
        height=height,
        resampling=Resampling.bilinear,
        nodata=DST_NODATA,
    ) as vrt:
        return np.asarray(vrt.read(), dtype=np.uint8)


def as_rgb(bands: np.ndarray) -> Image.Image:
    """The warped bands as PIL reads the PNG GDAL writes of them, converted to RGB (thumb_gen.py).

    GDAL's PNG is gray (1 band), gray + alpha (2), RGB (3) or RGBA (4); converting to RGB repeats
    the gray and drops the alpha.
    """
    count = bands.shape[0]
    if not 1 <= count <= 4:
        raise TileError(f"a PNG holds 1 to 4 bands, the mosaic has {count}")
    data = bands[0] if count == 1 else np.moveaxis(bands, 0, -1)
    # 2-D uint8 is read as L, (h, w, 2) as LA, (h, w, 3) as RGB, (h, w, 4) as RGBA.
    return Image.fromarray(np.ascontiguousarray(data)).convert("RGB")


def thumbnail(image: Image.Image, thumb_size: int) -> Image.Image:
    return image.resize((thumb_size, thumb_size), Image.Resampling.BICUBIC)


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def render_tile(src: DatasetReader, cell: Cell, image_size: int, thumb_size: int) -> bytes | None:
    """The tile's PNG bytes, or None where cut.py writes no file (an empty box)."""
    if src.crs is None:
        raise TileError(f"{src.name} has no projection")
    bounds = cell_bounds(cell, src.crs)
    height = warp_height(bounds, image_size)
    if height is None or height < 1:
        return None
    bands = warp_box(src, bounds, image_size, height)
    return encode_png(thumbnail(as_rgb(bands), thumb_size))

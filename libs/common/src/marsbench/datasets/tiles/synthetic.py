"""Synthetic CTX mosaic files for tests and the parity check: textured 8-bit GeoTIFFs on the Mars sphere.

Each file is named as the mosaic's (`MurrayLab_CTX_V01_E-004_N-08_Mosaic.tif`, the minimum corner
of its nominal 4 x 4 degree extent) and holds a patch of that extent in the mosaic's projection,
equirectangular (simple cylindrical, true scale at the equator) on the 3396190 m sphere. A patch
smaller than the extent leaves the other cells outside the raster (nodata 0 after the warp), as
gaps in the mosaic do.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

from marsbench.datasets.tiles.warp import MARS_SPHERE_RADIUS_M

MARS_EQUIRECTANGULAR = CRS.from_proj4(
    f"+proj=eqc +lat_ts=0 +lat_0=0 +lon_0=0 +x_0=0 +y_0=0 +a={MARS_SPHERE_RADIUS_M:.0f} "
    f"+b={MARS_SPHERE_RADIUS_M:.0f} +units=m +no_defs"
)
METRES_PER_DEGREE = MARS_SPHERE_RADIUS_M * math.pi / 180.0


def mosaic_file_name(start_lon: int, start_lat: int) -> str:
    return f"MurrayLab_CTX_V01_E{start_lon:03d}_N{start_lat:02d}_Mosaic.tif"


def texture(height: int, width: int, seed: int, bands: int = 1) -> np.ndarray:
    """(bands, height, width) uint8: smooth waves plus noise, so every warp weight shows."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    out = np.empty((bands, height, width), dtype=np.uint8)
    for b in range(bands):
        waves = 60 * np.sin(xx / (7.0 + 3 * b)) * np.cos(yy / 11.0) + 40 * np.sin((xx + yy) / 23.0)
        noise = rng.normal(0.0, 25.0, size=(height, width))
        out[b] = np.clip(128 + waves + noise, 1, 255).astype(np.uint8)
    return out


def write_source(
    folder: Path,
    start_lon: int,
    start_lat: int,
    *,
    patch: tuple[float, float, float, float] | None = None,
    px_per_deg: int = 100,
    seed: int = 0,
    bands: int = 1,
    nodata: float | None = None,
) -> Path:
    """One mosaic file; `patch` is (lon0, lat0, lon1, lat1) of the raster (default: the 4 x 4 extent)."""
    lon0, lat0, lon1, lat1 = patch or (start_lon, start_lat, start_lon + 4, start_lat + 4)
    width = round((lon1 - lon0) * px_per_deg)
    height = round((lat1 - lat0) * px_per_deg)
    pixel = METRES_PER_DEGREE / px_per_deg
    transform = Affine(pixel, 0.0, lon0 * METRES_PER_DEGREE, 0.0, -pixel, lat1 * METRES_PER_DEGREE)
    path = Path(folder) / mosaic_file_name(start_lon, start_lat)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": bands,
        "dtype": "uint8",
        "crs": MARS_EQUIRECTANGULAR,
        "transform": transform,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(texture(height, width, seed, bands))
    return path

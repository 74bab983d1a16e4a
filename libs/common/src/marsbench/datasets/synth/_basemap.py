"""A small synthetic shaded-relief map of Mars, equirectangular, for the search page's fallback.

Not real topography: a stylised planet built from the same spectral noise as the synthetic tiles
(`_terrain.fractal_noise`), plus a few broad shapes placed roughly where Mars has them (the
north-south dichotomy, the Tharsis rise and its shield volcanoes, the Hellas and Argyre basins,
a Valles Marineris trough) and a few hundred craters, hill-shaded under a north-western sun and
tinted from dark lowlands to ochre highlands, with thin polar caps. Columns run -180..180 degrees
east and rows 90..-90 degrees north, so a point (lon, lat) lies at x = (lon + 180) / 360 * width,
y = (90 - lat) / 180 * height: the geometry the page draws hits with.

`python -m marsbench.datasets.synth._basemap` rewrites the packaged copy
(`libs/common/src/marsbench/assets/basemap/mars-relief.jpg`, 1024 x 512, JPEG); the output depends on
the seed only.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from marsbench.assets import BASEMAP

from ._terrain import fractal_noise

BASEMAP_WIDTH = 1024
BASEMAP_SEED = 2026
BASEMAP_QUALITY = 82
PACKAGED = BASEMAP

# (lon, lat, sigma in degrees, height): broad rises (+) and basins (-), in rough Martian places.
_BUMPS: tuple[tuple[float, float, float, float], ...] = (
    (-105.0, 0.0, 28.0, 0.9),  # Tharsis rise
    (-133.5, 18.5, 4.0, 1.6),  # Olympus Mons
    (-121.0, 13.0, 2.5, 0.9),  # Ascraeus / Pavonis / Arsia row
    (-113.0, 1.0, 2.5, 0.9),
    (-121.0, -9.0, 2.5, 0.9),
    (147.0, 25.0, 6.0, 0.5),  # Elysium
    (70.0, -42.0, 14.0, -1.6),  # Hellas
    (-43.0, -50.0, 8.0, -0.9),  # Argyre
    (77.0, 37.0, 9.0, -0.5),  # Utopia's deepest part
)


def _gauss(lon: np.ndarray, lat: np.ndarray, lon0: float, lat0: float, sigma: float) -> np.ndarray:
    dlon = (lon - lon0 + 180.0) % 360.0 - 180.0  # wraps at the antimeridian
    dx = dlon * np.cos(np.deg2rad(lat))
    return np.exp(-(dx * dx + (lat - lat0) ** 2) / (2.0 * sigma * sigma))


def _craters(height: np.ndarray, lon: np.ndarray, lat: np.ndarray, rng: np.random.Generator) -> None:
    """Bowl-and-rim craters, more of them (and older, larger) in the southern highlands."""
    h, w = height.shape
    deg_per_px = 360.0 / w
    for _ in range(420):
        lat0 = float(np.rad2deg(np.arcsin(rng.uniform(-0.97, 0.97))))  # uniform over the sphere
        if lat0 > 0 and rng.uniform() < 0.6:
            lat0 = -lat0  # the cratered south
        lon0 = float(rng.uniform(-180.0, 180.0))
        radius = float(np.clip(rng.pareto(1.6) * 0.8 + 0.6, 0.6, 9.0))  # degrees
        reach = 3.0 * radius
        top, bottom = (90 - lat0 - reach) / deg_per_px, (90 - lat0 + reach) / deg_per_px
        rows = slice(max(0, int(top)), min(h, int(bottom) + 1))
        sub_lat = lat[rows]
        dlon = (lon[rows] - lon0 + 180.0) % 360.0 - 180.0
        r = np.hypot(dlon * np.cos(np.deg2rad(sub_lat)), sub_lat - lat0) / radius
        depth, rim = 0.1 * radius**0.7, 0.03 * radius**0.7
        profile = np.where(r < 1.0, depth * (r * r - 1.0) + rim, rim / np.maximum(r, 1.0) ** 3)
        height[rows] += np.where(r < reach / radius, profile, 0.0).astype(np.float32)


def render_basemap(width: int = BASEMAP_WIDTH, seed: int = BASEMAP_SEED) -> np.ndarray:
    """An (width / 2, width, 3) uint8 RGB shaded-relief map (see the module docs)."""
    if width < 64 or width % 2:
        raise ValueError("the width must be an even number of at least 64 pixels")
    height_px = width // 2
    rng = np.random.default_rng([seed, 7])
    lon = (np.arange(width, dtype=np.float32) + 0.5) / width * 360.0 - 180.0
    lat = 90.0 - (np.arange(height_px, dtype=np.float32) + 0.5) / height_px * 180.0
    lon, lat = np.meshgrid(lon, lat)
    # Periodic noise on a width x width grid, every other row: it wraps east-west like the planet.
    relief = fractal_noise(rng, width, 3.4)[::2] * 0.12 + fractal_noise(rng, width, 2.4)[::2] * 0.006
    boundary = 5.0 + 12.0 * np.sin(np.deg2rad(lon + 40.0)) + 6.0 * np.sin(np.deg2rad(2.0 * lon))
    elevation = 0.8 * np.tanh((boundary - lat) / 9.0) + relief
    for lon0, lat0, sigma, amp in _BUMPS:
        elevation += amp * _gauss(lon, lat, lon0, lat0, sigma)
    # Valles Marineris: a long trough east of Tharsis.
    along = np.clip((lon + 95.0) / 55.0, 0.0, 1.0)
    inside = (lon > -95.0) & (lon < -40.0)
    elevation -= 0.7 * inside * np.exp(-(((lat + 9.0 + 4.0 * along) / 1.6) ** 2)) * np.sin(np.pi * along)
    elevation = elevation.astype(np.float32)
    _craters(elevation, lon, lat, rng)

    # Hill shade: slopes per degree on the ground (x shrinks by cos(lat)), sun from the north-west.
    step = 360.0 / width
    gy, gx = np.gradient(elevation, step)
    gx = gx / np.maximum(np.cos(np.deg2rad(lat)), 0.05)
    gy = -gy  # rows run north to south
    exaggeration = 3.0
    nx, ny = -gx * exaggeration, -gy * exaggeration
    sun = np.array([-0.5, 0.5, 0.707], dtype=np.float32)  # from the north-west, 45 degrees up
    shade = (nx * sun[0] + ny * sun[1] + sun[2]) / np.sqrt(nx * nx + ny * ny + 1.0)
    shade = np.clip(shade, 0.0, 1.0)

    low = np.array([92, 50, 34], dtype=np.float32)  # dark lowland basalt
    high = np.array([214, 150, 96], dtype=np.float32)  # dusty ochre highlands
    lo, hi = np.percentile(elevation, [2.0, 98.0])
    tint = np.clip((elevation - lo) / (hi - lo + 1e-6), 0.0, 1.0)
    colour = low + (high - low) * tint[..., None]
    rgb = colour * (0.45 + 0.75 * shade[..., None])
    cap = np.clip((np.abs(lat) - 83.0 - 10.0 * relief) / 2.0, 0.0, 1.0)[..., None]
    rgb = rgb * (1.0 - cap) + np.array([238, 232, 226], dtype=np.float32) * cap
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def basemap_jpeg(width: int = BASEMAP_WIDTH, seed: int = BASEMAP_SEED) -> bytes:
    out = io.BytesIO()
    Image.fromarray(render_basemap(width, seed), "RGB").save(out, format="JPEG", quality=BASEMAP_QUALITY)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    """Write the packaged basemap (or the path given as the one argument)."""
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else PACKAGED
    target.parent.mkdir(parents=True, exist_ok=True)
    data = basemap_jpeg()
    target.write_bytes(data)
    print(f"wrote {target} ({len(data):,} bytes, {BASEMAP_WIDTH} x {BASEMAP_WIDTH // 2})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Task 3 data: a tiled region of synthetic CTX mosaic with catalogued landforms.

The region is cut into 0.2-degree tiles named by their minimum corner and grouped by 4-degree
source mosaic, as the published tile set is. Each landform of the catalogue sits in one or
more clusters; every catalogue point lies inside a tile that shows that landform, so a model
that recognises the landform can find the points. Other tiles are plains, some with craters
or slope streaks as distractors (neither is a catalogued landform).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._io import chunks, encode_png, shard_name, write_file, write_tar
from ._landforms import add_crater, draw, sample_feature
from ._random import Stream, rng_for
from ._scales import MOSAIC_WIDTH_DEG, TILE_TENTHS, ScaleSpec
from ._terrain import TerrainStyle, new_canvas, render, sample_style

# Catalogue name -> the drawer that draws it.
GEO_LANDFORMS: dict[str, str] = {
    "alluvial_fans": "alluvial_fan",
    "glacier-like_form": "glacier-like_form",
    "landslides": "landslide",
    "pitted_cones": "pitted_cone",
    "yardangs": "yardang",
}
THUMB_SUBDIR = Path("tiles") / "image_size_512_delta_0.2" / "thumb"

_DISTRACTORS = (("crater", 0.12), ("slope_streak", 0.03))  # (kind, share of free tiles)
_MIN_CLUSTER_SEPARATION = 14  # tenths of a degree
_CLUSTER_SPREAD_TILES = 2

Tile = tuple[int, int]  # (lon, lat) of the minimum corner, in tenths of a degree


def _coord(prefix: str, tenths: int) -> str:
    sign = "_" if tenths < 0 else ""
    return f"{prefix}{sign}{abs(tenths) // 10}_{abs(tenths) % 10}"


def tile_name(tile: Tile) -> str:
    """`E12_4_N_3_2.png` for lon 12.4, lat -3.2: decimal point as `_`, minus as a leading `_`."""
    return f"{_coord('E', tile[0])}_{_coord('N', tile[1])}.png"


def mosaic_name(lon_deg: int, lat_deg: int) -> str:
    """A source mosaic name in the CTX global mosaic's style, e.g. `synth_ctx_E-004_N-02`."""

    def deg(prefix: str, v: int) -> str:
        return f"{prefix}{'-' if v < 0 else ''}{abs(v):03d}"

    return f"synth_ctx_{deg('E', lon_deg)}_{deg('N', lat_deg)}"


def mosaics(spec: ScaleSpec) -> dict[str, list[Tile]]:
    """Source mosaic name -> its tiles, sorted by tile name (the order shards hold them in)."""
    (west, east), (south, north) = spec.geo_lon_range, spec.geo_lat_range
    out: dict[str, list[Tile]] = {}
    for lon0 in range(west, east, MOSAIC_WIDTH_DEG):
        tiles = [
            (lon, lat)
            for lon in range(lon0 * 10, (lon0 + MOSAIC_WIDTH_DEG) * 10, TILE_TENTHS)
            for lat in range(south * 10, north * 10, TILE_TENTHS)
        ]
        out[mosaic_name(lon0, south)] = sorted(tiles, key=tile_name)
    return out


@dataclass(frozen=True, slots=True)
class GeoPlan:
    points: dict[str, list[tuple[float, float]]]  # catalogue name -> (lon, lat) points
    tile_kind: dict[Tile, str]  # tiles that show a landform or distractor -> drawer kind
    phases: tuple[float, float, float]  # of the smooth regional tone and roughness fields


def _pick_centres(rng: np.random.Generator, tiles: list[Tile], n: int, margin: int) -> list[Tile]:
    """n cluster centres away from the region's border and from each other."""
    lons = [t[0] for t in tiles]
    lats = [t[1] for t in tiles]
    inner = [
        t
        for t in tiles
        if min(lons) + margin <= t[0] <= max(lons) - margin
        and min(lats) + margin <= t[1] <= max(lats) - margin
    ]
    centres: list[Tile] = []
    separation = _MIN_CLUSTER_SEPARATION
    while len(centres) < n:
        for _ in range(200):
            c = inner[int(rng.integers(len(inner)))]
            if all(np.hypot(c[0] - o[0], c[1] - o[1]) >= separation for o in centres):
                centres.append(c)
                break
        else:  # a crowded region: accept closer clusters rather than fail
            separation = max(TILE_TENTHS, separation - TILE_TENTHS)
    return centres


def plan_geo(seed: int, spec: ScaleSpec) -> GeoPlan:
    rng = rng_for(seed, Stream.GEO_PLAN)
    all_tiles = sorted(t for tiles in mosaics(spec).values() for t in tiles)
    region = set(all_tiles)
    n_clusters = spec.geo_clusters_per_landform
    centres = _pick_centres(rng, all_tiles, n_clusters * len(GEO_LANDFORMS), margin=3 * TILE_TENTHS)
    points: dict[str, list[tuple[float, float]]] = {}
    tile_kind: dict[Tile, str] = {}
    for li, (name, kind) in enumerate(GEO_LANDFORMS.items()):
        own = centres[li * n_clusters : (li + 1) * n_clusters]
        points[name] = []
        while len(points[name]) < spec.geo_points_per_landform:
            cx, cy = own[len(points[name]) % n_clusters]
            dx, dy = rng.integers(-_CLUSTER_SPREAD_TILES, _CLUSTER_SPREAD_TILES + 1, 2) * TILE_TENTHS
            tile = (int(cx + dx), int(cy + dy))
            if tile not in region or tile_kind.get(tile, kind) != kind:
                continue
            tile_kind[tile] = kind
            offset = rng.uniform(0.02, 0.18, 2)
            points[name].append(
                (round(tile[0] / 10 + float(offset[0]), 4), round(tile[1] / 10 + float(offset[1]), 4))
            )
    for tile in [t for t in all_tiles if t not in tile_kind]:
        u = rng.uniform()
        for kind, share in _DISTRACTORS:
            if u < share:
                tile_kind[tile] = kind
                break
            u -= share
    phases = tuple(float(p) for p in rng.uniform(0, 2 * np.pi, 3))
    return GeoPlan(points=points, tile_kind=tile_kind, phases=(phases[0], phases[1], phases[2]))


def regional_style(plan: GeoPlan, tile: Tile, rng: np.random.Generator) -> TerrainStyle:
    """Tone and roughness vary smoothly over the region, so neighbouring tiles look alike."""
    lon, lat = tile[0] / 10, tile[1] / 10
    p0, p1, p2 = plan.phases
    tone = 0.52 + 0.12 * np.sin(0.8 * lon + p0) * np.cos(0.9 * lat + p1)
    roughness = 0.007 + 0.004 * np.sin(0.6 * lon + 0.5 * lat + p2)
    return TerrainStyle(
        roughness=float(roughness * rng.uniform(0.85, 1.15)),
        tone=float(tone * rng.uniform(0.95, 1.05)),
        spectral_slope=float(rng.uniform(3.0, 3.8)),
    )


def tile_image(seed: int, plan: GeoPlan, tile: Tile, size: int) -> np.ndarray:
    # Offsets keep the generator's entropy words non-negative for any longitude and latitude.
    rng = rng_for(seed, Stream.GEO_TILE, tile[0] + 1800, tile[1] + 900)
    canvas = new_canvas(rng, size, regional_style(plan, tile, rng))
    for _ in range(int(rng.integers(0, 4))):
        add_crater(canvas, float(rng.uniform()), float(rng.uniform()), float(rng.uniform(0.012, 0.035)))
    kind = plan.tile_kind.get(tile)
    if kind is not None:
        draw(canvas, rng, sample_feature(rng, kind))
    return render(canvas, rng)


def query_image(seed: int, landform_index: int, index: int, size: int) -> np.ndarray:
    rng = rng_for(seed, Stream.GEO_QUERY, landform_index, index)
    canvas = new_canvas(rng, size, sample_style(rng))
    kind = list(GEO_LANDFORMS.values())[landform_index]
    draw(canvas, rng, sample_feature(rng, kind))
    return render(canvas, rng)


def _catalogue_csv(name: str, points: list[tuple[float, float]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["lon", "lat", "name"])
    writer.writerows([f"{lon:.4f}", f"{lat:.4f}", f"{name}_{i:03d}"] for i, (lon, lat) in enumerate(points))
    return buf.getvalue().encode("utf-8")


def build_geo(root: Path, spec: ScaleSpec, seed: int, size: int) -> tuple[GeoPlan, dict[str, int], int]:
    """Write `<root>/dataset/{tiles,ground_truth,image_queries}`.

    Returns the plan, the number of tiles per source mosaic and the number of shards.
    """
    dataset = root / "dataset"
    plan = plan_geo(seed, spec)
    per_mosaic: dict[str, int] = {}
    shards = 0
    for source, tiles in mosaics(spec).items():
        for shard, indices in enumerate(chunks(len(tiles), spec.geo_tiles_per_shard)):
            members = (
                (tile_name(tiles[i]), encode_png(tile_image(seed, plan, tiles[i], size))) for i in indices
            )
            write_tar(dataset / THUMB_SUBDIR / source / shard_name(shard), members)
            shards += 1
        per_mosaic[source] = len(tiles)
    for li, name in enumerate(GEO_LANDFORMS):
        write_file(dataset / "ground_truth" / f"{name}.csv", _catalogue_csv(name, plan.points[name]))
        for qi in range(spec.geo_queries_per_landform):
            png = encode_png(query_image(seed, li, qi, size))
            write_file(dataset / "image_queries" / name / f"{name}_{qi:02d}.png", png)
    return plan, per_mosaic, shards

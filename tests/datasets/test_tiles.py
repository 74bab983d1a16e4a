"""`marsbench data build-tiles` (marsbench.datasets.tiles): names, cell bounds, sizes, shards the geo
reader reads, resumption and the process pool, on a tiny synthetic mosaic (rasterio's GDAL only).

Pixel equality with the reference's own script (run with Debian's GDAL) is benchmarks/parity/
tiles_parity.py's job; see docs/data-tiles.md.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

from marsbench.cli.main import main as cli_main
from marsbench.datasets.coords import parse_tile_name
from marsbench.datasets.geo import NAME_FIELD, SOURCE_FIELD, GeoTileDataset, tile_lonlat
from marsbench.datasets.records import SkipLog
from marsbench.datasets.tiles.grid import (
    SourceNameError,
    parse_source_corner,
    source_beyond_latitude,
    source_cells,
)
from marsbench.datasets.tiles.shards import TileProgress, TileSettings, build_tiles, plan_tiles
from marsbench.datasets.tiles.synthetic import write_source
from marsbench.datasets.tiles.warp import render_tile

SMALL = TileSettings(image_size=16, thumb_size=16, shard_size=150)
THUMB = Path("tiles/image_size_16_delta_0.2/thumb")


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mosaic")
    write_source(folder, -4, -8, patch=(-3.5, -7.5, -1.5, -5.5), px_per_deg=40, seed=1)
    write_source(folder / "sub", 8, 4, px_per_deg=20, seed=2, bands=3, nodata=0)
    write_source(folder, 20, -84, px_per_deg=5, seed=3)  # beyond 80 degrees: left out
    (folder / "notes.tif").write_bytes(b"")  # no corner in the name: left out
    return folder


def _shards(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.tar"))}


def test_source_corner_and_latitude_filter() -> None:
    assert parse_source_corner("MurrayLab_CTX_V01_E-004_N-08_Mosaic.tif") == (-4, -8)
    assert parse_source_corner("/x/murraylab_ctx_v01_e172_n32_mosaic.TIF") == (172, 32)
    with pytest.raises(SourceNameError):
        parse_source_corner("mosaic.tif")
    assert source_beyond_latitude(-84) and source_beyond_latitude(80) and source_beyond_latitude(-88)
    assert not source_beyond_latitude(-80) and not source_beyond_latitude(76)


def test_cells_names_and_bounds() -> None:
    cells = source_cells(-4, -8)
    assert len(cells) == 400 and len({c.name for c in cells}) == 400
    assert [c.name for c in cells] == sorted(c.name for c in cells)
    by_index = {(c.row, c.col): c for c in cells}
    assert by_index[(2, 3)].name == "E_3_4_N_7_6.png"
    assert by_index[(0, 0)].name == "E_4_0_N_8_0.png"
    assert by_index[(19, 19)].name == "E_0_2_N_4_2.png"
    for cell in cells:
        lon, lat = parse_tile_name(cell.name)
        assert lon == pytest.approx(cell.min_lon, abs=1e-9) and lat == pytest.approx(cell.min_lat, abs=1e-9)
        assert cell.max_lon - cell.min_lon == pytest.approx(
            0.2
        ) and cell.max_lat - cell.min_lat == pytest.approx(0.2)
        assert (
            -4 <= cell.min_lon < cell.max_lon <= -4 + 4 + 1e-9
            and -8 <= cell.min_lat < cell.max_lat <= -4 + 1e-9
        )
    assert source_cells(8, 4)[0].name == "E10_0_N4_0.png"  # name order, not grid order


def test_tile_size_and_nodata_outside_the_raster(mosaic: Path) -> None:
    cells = {c.name: c for c in source_cells(-4, -8)}
    with rasterio.open(mosaic / "MurrayLab_CTX_V01_E-04_N-8_Mosaic.tif") as src:
        inside = Image.open(io.BytesIO(render_tile(src, cells["E_3_0_N_7_0.png"], 512, 512) or b""))
        outside = Image.open(io.BytesIO(render_tile(src, cells["E_4_0_N_8_0.png"], 512, 512) or b""))
    assert inside.size == (512, 512) and inside.mode == "RGB"
    pixels = np.asarray(inside)
    assert pixels.min() > 0 and (pixels[..., 0] == pixels[..., 2]).all()  # grey, no nodata inside
    assert outside.size == (512, 512) and not np.asarray(outside).any()


def test_build_read_resume_and_parallel(mosaic: Path, tmp_path: Path) -> None:
    seen: list[TileProgress] = []
    plan, progress = build_tiles(
        mosaic, tmp_path / "a", SMALL, workers=2, on_progress=lambda p: seen.append(p)
    )
    assert sorted(Path(f).name for f, _ in plan.skipped_sources) == [
        "MurrayLab_CTX_V01_E020_N-84_Mosaic.tif",
        "notes.tif",
    ]
    assert (progress.total, progress.written, progress.resumed, progress.errors) == (800, 800, 0, [])
    assert seen and seen[-1].done == 800 and progress.rate
    shards = _shards(tmp_path / "a" / THUMB)
    assert sorted(shards) == [
        f"{source}/{i:06d}.tar"
        for source in ("MurrayLab_CTX_V01_E-04_N-8_Mosaic", "MurrayLab_CTX_V01_E008_N04_Mosaic")
        for i in range(3)
    ]

    # The geo reader reads every tile, each at its cell's corner; sizes as asked.
    dataset = GeoTileDataset(tmp_path / "a", variant=SMALL.variant)
    skips = SkipLog()
    records = list(dataset.iter_records(skips))
    assert dataset.layout == "tar" and skips.count == 0 and len(records) == 800
    corners = {(r.payload[SOURCE_FIELD], r.payload[NAME_FIELD]) for r in records}
    expected = {("MurrayLab_CTX_V01_E-04_N-8_Mosaic", c.name) for c in source_cells(-4, -8)}
    expected |= {("MurrayLab_CTX_V01_E008_N04_Mosaic", c.name) for c in source_cells(8, 4)}
    assert corners == expected
    record = records[0]
    assert tile_lonlat(record.payload) == parse_tile_name(record.payload[NAME_FIELD])
    assert Image.open(io.BytesIO(record.image)).size == (16, 16)

    # One process gives the same bytes as the pool.
    build_tiles(mosaic, tmp_path / "b", SMALL, workers=1)
    assert _shards(tmp_path / "b" / THUMB) == shards

    # Resumable: finished shards are skipped; a lost shard and a stale partial file are redone.
    source_dir = tmp_path / "a" / THUMB / "MurrayLab_CTX_V01_E008_N04_Mosaic"
    (source_dir / "000001.tar").unlink()
    (source_dir / ".000001.tar.partial-999").write_bytes(b"interrupted")
    _, again = build_tiles(mosaic, tmp_path / "a", SMALL, workers=2)
    assert (again.resumed, again.written, again.shards_resumed, again.shards_written) == (650, 150, 5, 1)
    assert _shards(tmp_path / "a" / THUMB) == shards
    assert not list(source_dir.glob(".*"))
    _, done = build_tiles(mosaic, tmp_path / "a", SMALL, workers=2)
    assert (done.resumed, done.written) == (800, 0)
    with tarfile.open(source_dir / "000002.tar") as tar:
        assert len(tar.getnames()) == 100


def test_plan_matches_reference_shard_layout(mosaic: Path, tmp_path: Path) -> None:
    plan = plan_tiles(mosaic, tmp_path, TileSettings())  # defaults: 1000 tiles a shard
    assert [(job.source_name, job.path.name, len(job.cells)) for job in plan.shards] == [
        ("MurrayLab_CTX_V01_E-04_N-8_Mosaic", "000000.tar", 400),
        ("MurrayLab_CTX_V01_E008_N04_Mosaic", "000000.tar", 400),
    ]
    assert plan.shards[0].path.parent.parent == tmp_path / "tiles/image_size_512_delta_0.2/thumb"


def test_cli(mosaic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["data", "build-tiles", "--mosaic", str(mosaic), "--out", str(tmp_path), "--image-size", "16"]
    assert cli_main([*argv, "--thumb-size", "16", "--workers", "2"]) == 0
    out = capsys.readouterr()
    assert '"written": 800' in out.out and "tiles [" in out.err and "ETA" in out.err
    assert (
        cli_main(["data", "build-tiles", "--mosaic", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    )

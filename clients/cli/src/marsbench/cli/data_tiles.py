"""`marsbench data build-tiles`: the geo-localization tiles cut from the CTX mosaic's GeoTIFFs.

The library work is `marsbench.datasets.tiles`; this module adds the arguments, a progress line
(tiles, percentage, rate, ETA, as `marsbench.cli.progress` draws them) and the JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from marsbench.cli.errors import CommandError
from marsbench.cli.progress import format_duration, progress_bar
from marsbench.datasets.tiles.grid import (
    DEFAULT_DELTA_DEG,
    DEFAULT_IMAGE_SIZE,
    DEFAULT_MAX_ABS_LAT,
    DEFAULT_SHARD_SIZE,
    DEFAULT_THUMB_SIZE,
)

_REDRAW_S = 0.5  # on a terminal; one line per finished shard otherwise


def add_build_tiles_parser(data: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = data.add_parser(
        "build-tiles",
        help="Cut the CTX mosaic's GeoTIFFs into the benchmark's tile shards (Task 3).",
        description="Cuts every .tif under --mosaic (named ..._E<lon>_N<lat>_...tif, 4 x 4 degrees) into "
        "--delta-deg cells as the reference's build_tiles.py does (bilinear warp in the mosaic's projection, "
        "512 px, bicubic thumbnail) and writes WebDataset shards to <out>/tiles/image_size_<size>_delta_"
        "<delta>/thumb/<source>/000000.tar. Resumable: finished shards are kept and skipped. See "
        "docs/data-tiles.md.",
    )
    parser.add_argument("--mosaic", required=True, type=Path, help="Folder of the mosaic's .tif files.")
    parser.add_argument("--out", required=True, type=Path, help="The dataset/ folder to write tiles/ into.")
    parser.add_argument("--delta-deg", type=float, default=DEFAULT_DELTA_DEG, help="Cell size in degrees.")
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE, help="Warped width in px.")
    parser.add_argument("--thumb-size", type=int, default=DEFAULT_THUMB_SIZE, help="Tile size in px.")
    parser.add_argument(
        "--max-abs-lat", type=float, default=DEFAULT_MAX_ABS_LAT, help="Leave out files beyond this latitude."
    )
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="Tiles per shard.")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="Worker processes (default: all cores)."
    )
    parser.set_defaults(data_handler=run_build_tiles)


class TileProgressLine:
    """`tiles [####----]  42.0% 168/400 12.3 tiles/s ETA 0:19 resumed 0 empty 0 shards 0/1`."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._last = ""
        self._drawn = 0.0
        self._shards = -1

    def __call__(self, progress: object) -> None:
        from marsbench.datasets.tiles.shards import TileProgress

        assert isinstance(progress, TileProgress)
        fraction = progress.done / progress.total if progress.total else 1.0
        rate = f"{progress.rate:.1f} tiles/s" if progress.rate else "- tiles/s"
        shards = progress.shards_written + progress.shards_resumed
        line = (
            f"tiles {progress_bar(fraction)} {100 * fraction:5.1f}% {progress.done}/{progress.total} {rate} "
            f"ETA {format_duration(progress.eta_s)} resumed {progress.resumed} empty {progress.empty} "
            f"shards {shards} errors {len(progress.errors)}"
        )
        finished = progress.done >= progress.total and shards != self._shards
        now = time.monotonic()
        if self._tty:
            if finished or now - self._drawn >= _REDRAW_S:
                self._stream.write("\r" + line.ljust(len(self._last)))
                self._stream.flush()
                self._drawn, self._last = now, line
        elif shards != self._shards:
            self._stream.write(line + "\n")
            self._stream.flush()
        self._shards = shards

    def close(self) -> None:
        if self._tty and self._last:
            self._stream.write("\n")
            self._stream.flush()


def run_build_tiles(args: argparse.Namespace) -> int:
    from marsbench.datasets.tiles.shards import TileSettings, build_tiles

    if not args.mosaic.is_dir():
        raise CommandError(f"--mosaic {args.mosaic} is not a folder")
    try:
        settings = TileSettings(
            delta_deg=args.delta_deg,
            image_size=args.image_size,
            thumb_size=args.thumb_size,
            max_abs_lat=args.max_abs_lat,
            shard_size=args.shard_size,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    line = TileProgressLine()
    try:
        plan, progress = build_tiles(args.mosaic, args.out, settings, workers=args.workers, on_progress=line)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    finally:
        line.close()
    summary = {
        **progress.to_dict(),
        "out": str(args.out / "tiles" / settings.variant / "thumb"),
        "shards": len(plan.shards),
        "skipped_sources": [{"file": f, "why": why} for f, why in plan.skipped_sources],
    }
    print(json.dumps(summary, indent=2))
    if progress.errors:
        raise CommandError(
            f"{len(progress.errors)} tiles failed (their shards were not written): rerun to retry"
        )
    return 0

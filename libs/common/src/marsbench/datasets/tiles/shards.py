"""Plan and write the tile shards of a CTX mosaic folder: resumable, over a process pool.

Layout (build_tiles.py's, the one `marsbench.datasets.geo` reads): `<out>/tiles/<variant>/thumb/
<source>/000000.tar ...`, `<source>` being the mosaic file's name without `.tif`, each shard
holding `shard_size` tiles in file-name order as `E.._N...png` members.

A shard is the unit of work and of resumption: it is written to a hidden temporary file beside
it and renamed into place once complete, so a shard that exists is finished and a later run
skips it. A run stopped mid-shard loses only that shard's tiles. Tiles are rendered by worker
processes (one task per tile, each worker keeping its current mosaic file open) and the shards
are written by the calling process, in order.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marsbench.datasets.geo import THUMB_DIR, TILES_DIR
from marsbench.datasets.tiles.grid import (
    DEFAULT_DELTA_DEG,
    DEFAULT_IMAGE_SIZE,
    DEFAULT_MAX_ABS_LAT,
    DEFAULT_SHARD_SIZE,
    DEFAULT_THUMB_SIZE,
    SOURCE_SUFFIX,
    Cell,
    SourceNameError,
    parse_source_corner,
    shard_chunks,
    shard_file_name,
    source_beyond_latitude,
    source_cells,
    variant_name,
)

PARTIAL_PREFIX = "."
PARTIAL_INFIX = ".partial-"
_MEMBER_MODE = 0o644


@dataclass(frozen=True, slots=True)
class TileSettings:
    delta_deg: float = DEFAULT_DELTA_DEG
    image_size: int = DEFAULT_IMAGE_SIZE
    thumb_size: int = DEFAULT_THUMB_SIZE
    max_abs_lat: float = DEFAULT_MAX_ABS_LAT
    shard_size: int = DEFAULT_SHARD_SIZE

    def __post_init__(self) -> None:
        for name in ("image_size", "thumb_size", "shard_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    @property
    def variant(self) -> str:
        return variant_name(self.image_size, self.delta_deg)


@dataclass(frozen=True, slots=True)
class ShardJob:
    source: Path  # the mosaic file
    source_name: str  # its name without .tif: the folder under thumb/
    index: int
    cells: tuple[Cell, ...]
    path: Path  # the finished shard


@dataclass(slots=True)
class TilePlan:
    shards: list[ShardJob] = field(default_factory=list)
    skipped_sources: list[tuple[str, str]] = field(default_factory=list)  # (file, why)

    @property
    def tiles(self) -> int:
        return sum(len(job.cells) for job in self.shards)


@dataclass(slots=True)
class TileProgress:
    """Counts so far: tiles in `total`, of which `written` now, `resumed` in finished shards, and
    `empty` cells cut.py writes no file for (an empty box, or a failed warp)."""

    total: int
    written: int = 0
    resumed: int = 0
    empty: int = 0
    shards_written: int = 0
    shards_resumed: int = 0
    started: float = field(default_factory=time.monotonic)
    errors: list[str] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.written + self.resumed + self.empty

    @property
    def rate(self) -> float | None:
        """Tiles per second rendered by this run (resumed ones excluded)."""
        elapsed = time.monotonic() - self.started
        handled = self.written + self.empty
        return handled / elapsed if handled and elapsed > 0 else None

    @property
    def eta_s(self) -> float | None:
        rate = self.rate
        return (self.total - self.done) / rate if rate else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tiles": self.total,
            "written": self.written,
            "resumed": self.resumed,
            "empty": self.empty,
            "shards_written": self.shards_written,
            "shards_resumed": self.shards_resumed,
            "seconds": round(time.monotonic() - self.started, 3),
            "errors": list(self.errors),
        }


OnProgress = Callable[[TileProgress], None]


def thumb_root(out: Path, settings: TileSettings) -> Path:
    return Path(out) / TILES_DIR / settings.variant / THUMB_DIR


def mosaic_files(mosaic: Path) -> list[Path]:
    """Every `.tif` (any case) under the folder, sorted by path, as collect_tif_files lists them."""
    found = [Path(root) / name for root, _, names in os.walk(mosaic) for name in names]
    return sorted((p for p in found if p.name.lower().endswith(SOURCE_SUFFIX)), key=lambda p: str(p))


def plan_tiles(mosaic: Path, out: Path, settings: TileSettings) -> TilePlan:
    plan = TilePlan()
    root = thumb_root(out, settings)
    for source in mosaic_files(Path(mosaic)):
        try:
            start_lon, start_lat = parse_source_corner(source.name)
        except SourceNameError as exc:
            plan.skipped_sources.append((str(source), str(exc)))
            continue
        if source_beyond_latitude(start_lat, settings.max_abs_lat):
            plan.skipped_sources.append((str(source), f"latitude {start_lat} beyond {settings.max_abs_lat}"))
            continue
        name = source.stem  # os.path.splitext(name)[0], as build_tiles.py names the folder
        cells = source_cells(start_lon, start_lat, settings.delta_deg)
        for index, chunk in enumerate(shard_chunks(cells, settings.shard_size)):
            path = root / name / shard_file_name(index)
            plan.shards.append(ShardJob(source, name, index, tuple(chunk), path))
    return plan


# ----------------------------------------------------------------------------- workers

_open: dict[str, Any] = {}


def _dataset(path: str) -> Any:
    import rasterio

    current = _open.get("path")
    if current != path:
        if "dataset" in _open:
            _open.pop("dataset").close()
        _open["dataset"] = rasterio.open(path)
        _open["path"] = path
    return _open["dataset"]


TileTask = tuple[str, Cell, int, int]
TileResult = tuple[str, bytes | None, str | None]  # (name, png or None, error)


def render_task(task: TileTask) -> TileResult:
    from marsbench.datasets.tiles.warp import render_tile

    source, cell, image_size, thumb_size = task
    try:
        return cell.name, render_tile(_dataset(source), cell, image_size, thumb_size), None
    except Exception as exc:
        return cell.name, None, f"{source} {cell.name}: {type(exc).__name__}: {exc}"


# ----------------------------------------------------------------------------- shards


def write_shard(path: Path, members: list[tuple[str, bytes]]) -> None:
    """The shard, atomically: a hidden temporary file beside it, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f"{PARTIAL_PREFIX}{path.name}{PARTIAL_INFIX}*"):
        stale.unlink(missing_ok=True)
    partial = path.with_name(f"{PARTIAL_PREFIX}{path.name}{PARTIAL_INFIX}{os.getpid()}")
    with partial.open("wb") as raw:
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = _MEMBER_MODE
                info.mtime = 0
                tar.addfile(info, io.BytesIO(data))
        raw.flush()
        os.fsync(raw.fileno())
    partial.replace(path)


def _tasks(jobs: list[ShardJob], settings: TileSettings) -> Iterator[TileTask]:
    for job in jobs:
        for cell in job.cells:
            yield str(job.source), cell, settings.image_size, settings.thumb_size


def build_tiles(
    mosaic: Path,
    out: Path,
    settings: TileSettings | None = None,
    *,
    workers: int | None = None,
    on_progress: OnProgress | None = None,
) -> tuple[TilePlan, TileProgress]:
    """Cut every mosaic file under `mosaic` into tile shards under `out` (a dataset/ folder)."""
    settings = settings or TileSettings()
    plan = plan_tiles(mosaic, out, settings)
    progress = TileProgress(total=plan.tiles)
    pending = []
    for job in plan.shards:
        if job.path.is_file():
            progress.resumed += len(job.cells)
            progress.shards_resumed += 1
        else:
            pending.append(job)
    if on_progress:
        on_progress(progress)
    if not pending:
        return plan, progress
    workers = max(1, min(workers or os.cpu_count() or 1, sum(len(job.cells) for job in pending)))
    if workers == 1:
        _consume(pending, map(render_task, _tasks(pending, settings)), progress, on_progress)
    else:
        # fork: the parent has opened no mosaic file (the plan reads only names), so the children
        # share no GDAL dataset; tasks are a few hundred bytes, results one PNG each.
        context = multiprocessing.get_context("fork")
        with context.Pool(processes=workers) as pool:
            results = pool.imap(render_task, _tasks(pending, settings), chunksize=4)
            _consume(pending, results, progress, on_progress)
    return plan, progress


def _consume(
    jobs: list[ShardJob],
    results: Iterator[TileResult],
    progress: TileProgress,
    on_progress: OnProgress | None,
) -> None:
    for job in jobs:
        members: list[tuple[str, bytes]] = []
        failed = False
        for _ in job.cells:
            name, data, error = next(results)
            if error is not None:
                progress.errors.append(error)
                failed = True
            if data is None:
                progress.empty += 1
            else:
                members.append((name, data))
                progress.written += 1
            if on_progress:
                on_progress(progress)
        if failed:
            progress.written -= len(members)  # not written: a later run tries the shard again
            continue
        write_shard(job.path, members)
        progress.shards_written += 1
        if on_progress:
            on_progress(progress)

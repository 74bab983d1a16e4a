"""Reader for the global geo-localization data (Task 3 of the protocol).

The published `dataset/` folder holds:

- `tiles/<variant>/thumb/<source>/000000.tar ...`: WebDataset shards of PNG tiles, one folder
  per source mosaic; or, in the older layout, loose image files in those folders. As in the
  reference, the layout is "tar" as soon as any `.tar` file lies anywhere under `thumb/`; loose
  images are then not part of the tile set (they are reported as skipped, not read).
- `ground_truth/<landform>.csv`: catalogue points, columns `lon` and `lat` (extra ones allowed).
- `image_queries/<landform>/*.png`: example images of each landform.

Tile candidates are the reference's: members or files whose name ends in .png, .jpg, .jpeg or
.bmp (any case). Each candidate becomes a record or a reported skip: only a name that parses as
a tile (`E<lon>_N<lat>.png`, see `coords`) yields a record, because the reference gives any
other candidate no coordinate. Other members (e.g. `.json` sidecars) are not tiles and are
ignored. Image bytes are not decoded here: that is the encoder's job.

Resumable indexing works in units: one per shard file (tar layout) or one per folder holding
images (loose layout), named by their path relative to `thumb/`.

The tile payload's keys are defined here, by the reader that writes them (the shared library's
layers run tasks -> datasets, so a reader cannot import its task); `marsbench.tasks.geo` is where
the evaluator, the store filters and the tests import them from.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import logging
import math
import os
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np

from marsbench.datasets.confine import Confinement, RootsArg
from marsbench.datasets.coords import TileNameError, parse_tile_name
from marsbench.datasets.errors import DatasetError
from marsbench.datasets.lookup import FileStamp, ItemNotFound, file_stamp, is_plain_name, payload_text
from marsbench.datasets.records import ImageRecord, SkipLog
from marsbench.datasets.tar_shards import (
    MemberSpan,
    ShardIssue,
    index_tar_members,
    iter_tar_samples,
    read_member,
    scan_tar_members,
)

log = logging.getLogger(__name__)

Layout = Literal["tar", "loose"]

DEFAULT_VARIANT = "image_size_512_delta_0.2"
TILES_DIR = "tiles"
THUMB_DIR = "thumb"
GROUND_TRUTH_DIR = "ground_truth"
IMAGE_QUERIES_DIR = "image_queries"
GROUND_TRUTH_SUFFIX = ".csv"
SHARD_SUFFIX = ".tar"  # matched case-sensitively, as the reference matches it
PUBLISHED_LANDFORMS: tuple[str, ...] = (
    "alluvial_fans",
    "glacier-like_form",
    "landslides",
    "pitted_cones",
    "yardangs",
)
# The reference's filters, compared case-insensitively: tiles, and query images.
TILE_CANDIDATE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp")
QUERY_IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
)
LON_COLUMN, LAT_COLUMN = "lon", "lat"  # the catalogue's columns
GROUND_TRUTH_COLUMNS: tuple[str, str] = (LON_COLUMN, LAT_COLUMN)
ROOT_UNIT = "."  # the unit name of images directly in thumb/ (loose layout)

_FINGERPRINT_HEX_CHARS = 16
_LOGGED_BAD_ROWS = 5
# Shards whose tile index (file name -> member bytes) is kept for thumbnails: a few MB at most each.
_INDEXED_SHARDS = 64

# The tile payload: {NAME_FIELD: tile file name, SOURCE_FIELD: its folder under thumb/,
# LOCATION_FIELD: {LON_KEY: .., LAT_KEY: ..} (the tile's minimum corner in degrees east and north,
# a geo point as the store indexes it), UNIT_FIELD: its shard or folder}.
NAME_FIELD = "name"
SOURCE_FIELD = "source"
LOCATION_FIELD = "location"
UNIT_FIELD = "unit"
LON_KEY, LAT_KEY = "lon", "lat"

UnitDone = Callable[[str], None]
# Yields a unit's records, then returns whether the unit was read to its end.
UnitReader = Generator[ImageRecord, None, bool]


# ----------------------------------------------------------------------------- pure helpers


def is_tile_candidate(file_name: str) -> bool:
    return file_name.lower().endswith(TILE_CANDIDATE_EXTENSIONS)


def member_file_name(member: str) -> str:
    """The file name of a tar member path (the reference keys tiles by it, folders dropped)."""
    return member.rpartition("/")[2]


def record_key(source: str, name: str) -> str:
    """`<source>/<tile name>`: tile names repeat across sources only if mosaics overlap."""
    return f"{source}/{name}" if source else name


def tile_payload(name: str, source: str, unit: str, lon: float, lat: float) -> dict[str, Any]:
    return {
        NAME_FIELD: name,
        SOURCE_FIELD: source,
        LOCATION_FIELD: {LON_KEY: lon, LAT_KEY: lat},
        UNIT_FIELD: unit,
    }


def tile_lonlat(payload: Mapping[str, Any]) -> tuple[float, float]:
    """(lon, lat) of a stored tile payload, as the reader wrote them."""
    location = payload[LOCATION_FIELD]
    return location[LON_KEY], location[LAT_KEY]


def fingerprint_of(entries: Iterable[tuple[str, int]]) -> str:
    """Short sha256 hex over (relative name, size) pairs, independent of their order."""
    digest = hashlib.sha256()
    for name, size in sorted(entries):
        digest.update(f"{name}\0{size}\n".encode())
    return digest.hexdigest()[:_FINGERPRINT_HEX_CHARS]


def parse_point(lon_text: str | None, lat_text: str | None) -> tuple[float, float] | str:
    """(lon, lat) of one catalogue row, or why the row is unusable.

    Only unparsable and non-finite values are rejected: finite values are kept as they are,
    even out of range, because the reference counts every row it can compute with.
    """
    values: list[float] = []
    for column, text in zip(GROUND_TRUTH_COLUMNS, (lon_text, lat_text), strict=True):
        if text is None or not text.strip():
            return f"empty {column}"
        try:
            value = float(text)
        except ValueError:
            return f"{column} {text!r} is not a number"
        if not math.isfinite(value):
            return f"{column} {text!r} is not finite"
        values.append(value)
    return values[0], values[1]


# ----------------------------------------------------------------------------- file system


def tile_variants(root: Path) -> list[str]:
    """The tile variants (`tiles/<variant>/thumb/` folders) of a dataset folder, sorted."""
    tiles = Path(root) / TILES_DIR
    if not tiles.is_dir():
        return []
    return sorted(p.name for p in tiles.iterdir() if (p / THUMB_DIR).is_dir())


@dataclass(frozen=True, slots=True)
class _Unit:
    name: str  # the shard or folder path relative to thumb/ (ROOT_UNIT for thumb/ itself)
    source: str  # the folder holding the tiles, relative to thumb/ ("" for thumb/ itself)
    path: Path


@dataclass(frozen=True, slots=True)
class _Scan:
    layout: Layout
    units: list[_Unit]
    stray_images: list[str]  # loose images beside tar shards, relative to thumb/
    refused: list[tuple[str, str]]  # (path relative to thumb/, why): links out of the dataset roots


def _relative(path: Path, base: Path) -> str:
    relative = path.relative_to(base).as_posix()
    return "" if relative == "." else relative


def _scan_thumb(thumb: Path, confine: Confinement) -> _Scan:
    """Shards and image folders under `thumb/`, in the reference's order.

    Shards are sorted by path, as the reference sorts them; loose folders follow a top-down
    walk with sorted folder names, as its `os.walk` does. A shard or folder linking out of the
    dataset roots is left out and listed as refused (the walk never descends into linked
    folders anyway; one pointing out of the roots is said, not silently ignored).
    """
    shards: list[Path] = []
    image_folders: list[tuple[Path, list[str]]] = []
    refused: list[tuple[str, str]] = []
    for folder, dirs, files in os.walk(thumb):
        dirs.sort()
        for name in [*dirs, *(f for f in files if f.endswith(SHARD_SUFFIX))]:
            problem = confine.problem(Path(folder) / name)
            if problem is not None:
                refused.append((_relative(Path(folder) / name, thumb), problem))
        outside = {name for name, _ in refused}
        shards += [
            Path(folder) / f
            for f in files
            if f.endswith(SHARD_SUFFIX) and _relative(Path(folder) / f, thumb) not in outside
        ]
        images = sorted(f for f in files if is_tile_candidate(f))
        if images:
            image_folders.append((Path(folder), images))
    if shards:
        units = []
        for shard in sorted(shards, key=str):
            units.append(_Unit(_relative(shard, thumb), _relative(shard.parent, thumb), shard))
        strays = [str(PurePosixPath(_relative(f, thumb), n)) for f, names in image_folders for n in names]
        return _Scan("tar", units, strays, refused)
    units = [_Unit(_relative(f, thumb) or ROOT_UNIT, _relative(f, thumb), f) for f, _ in image_folders]
    return _Scan("loose", units, [], refused)


def _folder_images(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if is_tile_candidate(p.name) and p.is_file()), key=lambda p: p.name
    )


# ----------------------------------------------------------------------------- the tile reader


class GeoTileDataset:
    """The tiles of one published geo-localization `dataset/` folder, as an image source.

    Record keys are `<source>/<tile name>`; payloads are `tile_payload`'s, the location being the
    tile's minimum corner.
    """

    def __init__(self, root: Path, variant: str = DEFAULT_VARIANT, *, roots: RootsArg = None) -> None:
        self._root = Path(root)
        self._variant = variant
        # Links inside the folder must not lead out of the dataset roots (marsbench.datasets.confine).
        self._confine = Confinement.of(roots)
        self._confine.check(self._root)
        if not self._root.is_dir():
            raise DatasetError(
                f"geo-localization dataset folder {self._root} does not exist or is not a folder"
            )
        self._thumb = self._root / TILES_DIR / variant / THUMB_DIR
        if not self._thumb.is_dir():
            found = ", ".join(tile_variants(self._root)) or "none"
            raise DatasetError(
                f"no tile variant {variant!r} in {self._root}: expected the folder "
                f"{TILES_DIR}/{variant}/{THUMB_DIR}/ (variants found: {found})"
            )
        self._confine.check(self._thumb)  # tiles/<variant>/thumb itself may be a link
        self._scan = _scan_thumb(self._thumb, self._confine)
        self._count: int | None = None
        if not self._scan.units:
            raise DatasetError(
                f"no tiles in {self._thumb}: expected <source>/*{SHARD_SUFFIX} WebDataset shards or "
                f"<source>/ folders of tile images ({', '.join(TILE_CANDIDATE_EXTENSIONS)})"
            )

    @property
    def root(self) -> Path:
        return self._root

    @property
    def variant(self) -> str:
        return self._variant

    @property
    def thumb_dir(self) -> Path:
        return self._thumb

    @property
    def layout(self) -> Layout:
        return self._scan.layout

    def variants(self) -> list[str]:
        return tile_variants(self._root)

    def units(self) -> list[str]:
        """Resumable units in reading order: shard paths, or folder paths, relative to thumb/."""
        return [unit.name for unit in self._scan.units]

    def count(self) -> int:
        """Tile candidates before any skip, from tar headers or folder listings (no image reads).

        Loose images beside tar shards count too: each is reported as skipped. Reading every
        shard's headers takes about 10 us per tile warm (50 us cold), so the result is kept
        for the life of this object.
        """
        if self._count is None:
            self._count = self._count_candidates()
        return self._count

    def _count_candidates(self) -> int:
        if self._scan.layout == "loose":
            return sum(len(_folder_images(unit.path)) for unit in self._scan.units)
        members = sum(
            1
            for unit in self._scan.units
            for name, _ in scan_tar_members(unit.path).members
            if is_tile_candidate(member_file_name(name))
        )
        return members + len(self._scan.stray_images)

    def fingerprint(self) -> str:
        """Identifies this tile set by its shard (or image) files' relative names and sizes."""
        if self._scan.layout == "tar":
            files = [unit.path for unit in self._scan.units]
        else:
            files = [p for unit in self._scan.units for p in _folder_images(unit.path)]
        files = [p for p in files if self._confine.allows(p)]  # not even the size of a refused link
        entries = (
            (f"{self._scan.layout}:{p.relative_to(self._root).as_posix()}", p.stat().st_size) for p in files
        )
        return fingerprint_of(entries)

    def iter_records(
        self,
        skips: SkipLog,
        *,
        skip_units: Collection[str] = (),
        on_unit_done: UnitDone | None = None,
    ) -> Iterator[ImageRecord]:
        """Streams the tiles in reading order; every unusable candidate goes to `skips`.

        Skipped with a reason: a name that is not a tile name, an empty image, a key already
        yielded, an unreadable file, and (tar layout) loose images beside the shards. A damaged
        shard yields what it could read and is reported under its unit name.

        Units in `skip_units` are not read. `on_unit_done(unit)` is called once the unit's last
        record has been handed out (when the consumer asks for the next one, or at the end) and
        only for a unit read to its end without an I/O or archive failure, so that a resumed
        run retries any unit that failed part-way.
        """
        for name, why in self._scan.refused:
            skips.add(name, why)
        for stray in self._scan.stray_images:
            skips.add(stray, "loose image beside tar shards (only the shards are read, as in the reference)")
        skipped = frozenset(skip_units)
        seen: set[str] = set()
        # Skipped units of a source, not yet folded into `seen`: a later unit of the same source
        # must still lose a key to them, as it would in an uninterrupted run.
        unseen: dict[str, list[_Unit]] = {}
        for unit in self._scan.units:
            if unit.name in skipped:
                unseen.setdefault(unit.source, []).append(unit)
                continue
            for earlier in unseen.pop(unit.source, []):
                seen.update(_accepted_keys(earlier, self._confine))
            complete = yield from self._iter_unit(unit, seen, skips)
            if complete and on_unit_done is not None:
                on_unit_done(unit.name)

    def read_image(self, payload: Mapping[str, Any]) -> bytes:
        """The encoded tile a stored payload names (`unit`: its shard or folder, `name`: the tile).

        Only the units this reader found are looked in, and the name must be a bare file name, so
        a payload cannot lead out of `thumb/`. ItemNotFound when the unit or tile is not there,
        DatasetError when its file cannot be read.
        """
        name, unit_name = payload_text(payload, NAME_FIELD), payload_text(payload, UNIT_FIELD)
        unit = next((u for u in self._scan.units if u.name == unit_name), None)
        if unit is None or not is_plain_name(name) or not is_tile_candidate(name):
            raise ItemNotFound(f"no tile {name!r} in unit {unit_name!r} of {self._thumb}")
        try:
            if self._scan.layout == "loose":
                path = unit.path / name
                if not path.is_file():
                    raise ItemNotFound(f"no tile file {path}")
                return self._confine.check(path).read_bytes()  # OutsideRoots: a link out of the roots
            span = _tile_spans(file_stamp(unit.path)).get(name)
            if span is None:
                raise ItemNotFound(f"no tile {name!r} in shard {unit.path}")
            return read_member(unit.path, span)
        except OSError as exc:
            raise DatasetError(f"cannot read tile {name!r} of {unit.path}: {exc}") from exc

    def _iter_unit(self, unit: _Unit, seen: set[str], skips: SkipLog) -> UnitReader:
        if self._scan.layout == "loose":
            return (yield from _iter_folder(unit, seen, skips, self._confine))
        return (yield from _iter_shard(unit, seen, skips))


def _accept(unit: _Unit, name: str, data: bytes, seen: set[str], skips: SkipLog) -> ImageRecord | None:
    """The record of one tile candidate, or None after reporting why it is skipped."""
    key = record_key(unit.source, name)
    try:
        lon, lat = parse_tile_name(name)
    except TileNameError as exc:
        skips.add(key, str(exc))
        return None
    if not data:
        skips.add(key, "empty image (0 bytes)")
        return None
    if key in seen:
        skips.add(key, "duplicate tile (same source and name as an earlier tile)")
        return None
    seen.add(key)
    payload = tile_payload(name, unit.source, unit.name, lon, lat)
    return ImageRecord(key=key, image=data, payload=payload, unit=unit.name)


def _iter_shard(unit: _Unit, seen: set[str], skips: SkipLog) -> UnitReader:
    failed = False

    def report(issue: ShardIssue) -> None:
        nonlocal failed
        failed = failed or issue.fatal
        # Keyed by the reason too when reading goes on: a later fatal issue of the same shard
        # must not be folded into an earlier minor one (the log keeps one entry per key).
        skips.add(issue.shard if issue.fatal else f"{issue.shard}: {issue.reason}", issue.reason)

    for sample in iter_tar_samples(unit.path, report, shard=unit.name):
        base = member_file_name(sample.key)
        for ext, data in sample.parts.items():
            name = f"{base}.{ext}"
            if not is_tile_candidate(name):
                continue  # sidecars such as .json are not tiles (the reference ignores them too)
            record = _accept(unit, name, data, seen, skips)
            if record is not None:
                yield record
    return not failed


def _iter_folder(unit: _Unit, seen: set[str], skips: SkipLog, confine: Confinement) -> UnitReader:
    complete = True
    try:
        paths = _folder_images(unit.path)
    except OSError as exc:
        skips.add(unit.name, f"unreadable folder ({exc.strerror or exc})")
        return False
    for path in paths:
        refused = confine.problem(path)
        if refused is not None:  # a tile linking out of the roots: reported, never opened
            skips.add(record_key(unit.source, path.name), refused)
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            skips.add(record_key(unit.source, path.name), f"unreadable file ({exc.strerror or exc})")
            complete = False
            continue
        record = _accept(unit, path.name, data, seen, skips)
        if record is not None:
            yield record
    return complete


@functools.lru_cache(maxsize=_INDEXED_SHARDS)
def _tile_spans(shard: FileStamp) -> dict[str, MemberSpan]:
    """Tile file name -> member bytes of one shard; the first member of a name, as reading keeps."""
    spans: dict[str, MemberSpan] = {}
    for member, span in index_tar_members(Path(shard.path)).items():
        spans.setdefault(member_file_name(member), span)
    return spans


def _accepted_keys(unit: _Unit, confine: Confinement) -> Iterator[str]:
    """Keys an earlier run took from a finished unit, from tar headers or names alone."""
    if unit.path.is_dir():
        entries: Sequence[tuple[str, int]] = [
            (p.name, p.stat().st_size) for p in _folder_images(unit.path) if confine.allows(p)
        ]
    else:
        entries = [(member_file_name(n), size) for n, size in scan_tar_members(unit.path).members]
    for name, size in entries:
        try:
            parse_tile_name(name)
        except TileNameError:
            continue
        if size > 0:
            yield record_key(unit.source, name)


# ----------------------------------------------------------------------------- landforms and queries


def landforms(root: Path) -> list[str]:
    """The landforms with a ground-truth catalogue (`ground_truth/<landform>.csv`), sorted."""
    folder = Path(root) / GROUND_TRUTH_DIR
    if not folder.is_dir():
        raise DatasetError(f"no {GROUND_TRUTH_DIR}/ folder in {root}")
    return sorted(p.stem for p in folder.iterdir() if p.suffix == GROUND_TRUTH_SUFFIX and p.is_file())


def ground_truth_path(root: Path, landform: str) -> Path:
    return Path(root) / GROUND_TRUTH_DIR / f"{landform}{GROUND_TRUTH_SUFFIX}"


def load_ground_truth(path: Path, skips: SkipLog | None = None, *, roots: RootsArg = None) -> np.ndarray:
    """Catalogue points as an (m, 2) float64 array of (lon, lat), in file order.

    Rows whose lon or lat is empty, not a number or not finite are skipped, keyed
    `<file name>:line <n>` (n counts physical lines, the header being line 1); without a
    `skips` log they are logged as a warning instead. Missing columns raise `DatasetError`.
    The reference would fail on such rows rather than skip them. A file linking out of `roots`
    raises `OutsideRoots` (a DatasetError) unread: a run cannot go on without its catalogue.
    """
    path = Path(path)
    Confinement.of(roots).check(path)
    bad: list[tuple[str, str]] = []
    points: list[tuple[float, float]] = []
    try:
        # utf-8-sig: a byte-order mark must not become part of the first column's name.
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = list(reader.fieldnames or [])
            missing = [c for c in GROUND_TRUTH_COLUMNS if c not in columns]
            if missing:
                raise DatasetError(
                    f"ground-truth file {path} lacks the column(s) {', '.join(missing)}; "
                    f"columns found: {columns!r}"
                )
            for row in reader:
                point = parse_point(row.get(LON_COLUMN), row.get(LAT_COLUMN))
                if isinstance(point, str):
                    bad.append((f"{path.name}:line {reader.line_num}", point))
                else:
                    points.append(point)
    except FileNotFoundError as exc:
        raise DatasetError(f"ground-truth file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"ground-truth file {path} is unreadable: {exc}") from exc
    _report_bad_rows(path, bad, skips)
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)


def _report_bad_rows(path: Path, bad: list[tuple[str, str]], skips: SkipLog | None) -> None:
    if skips is not None:
        for key, reason in bad:
            skips.add(key, reason)
    elif bad:
        shown = "; ".join(f"{key}: {reason}" for key, reason in bad[:_LOGGED_BAD_ROWS])
        log.warning("skipped %d unusable row(s) of %s (%s)", len(bad), path, shown)


def query_image_paths(root: Path, landform: str, *, roots: RootsArg = None) -> list[Path]:
    """`image_queries/<landform>/` image files, sorted by name as the reference sorts them.

    A folder or file linking out of `roots` raises `OutsideRoots` naming it (nothing of it is
    read): dropping one query image would silently change the query, so the run is refused.
    """
    confine = Confinement.of(roots)
    folder = Path(root) / IMAGE_QUERIES_DIR / landform
    if not folder.is_dir():
        raise DatasetError(f"no query image folder {IMAGE_QUERIES_DIR}/{landform}/ in {root}")
    confine.check(folder)
    files = [p for p in folder.iterdir() if p.suffix.lower() in QUERY_IMAGE_EXTENSIONS and p.is_file()]
    for path in files:
        confine.check(path)
    return sorted(files, key=lambda p: p.name)


def query_images(root: Path, landform: str, *, roots: RootsArg = None) -> list[tuple[str, bytes]]:
    """(file name, encoded bytes) of a landform's query images; possibly empty."""
    images: list[tuple[str, bytes]] = []
    for path in query_image_paths(root, landform, roots=roots):
        try:
            images.append((path.name, path.read_bytes()))
        except OSError as exc:
            raise DatasetError(f"query image {path} is unreadable ({exc.strerror or exc})") from exc
    return images

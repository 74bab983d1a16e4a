"""Reader for the landform retrieval data (Task 2 of the protocol).

Two published layouts, detected the way the reference detects them:

- parquet: Hugging Face parquet shards directly in the dataset folder, else in its `data/` folder.
  Columns `image` (a struct {bytes, path}, or raw binary), `label` (a class index whose names are
  in the schema's Hugging Face feature metadata) and an optional id (`image_id`, else `id`).
- folders: one subfolder per class holding image files; the image name is the path relative to
  the dataset folder, with forward slashes.

The reader streams encoded bytes; it does not decode images (except `verify=True`, which only
checks that Pillow can parse them).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from collections.abc import Callable, Collection, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from marsbench.datasets.confine import Confinement, RootsArg
from marsbench.datasets.errors import DatasetError
from marsbench.datasets.lookup import FileStamp, ItemNotFound, file_stamp, payload_text
from marsbench.datasets.records import ImageRecord, SkipLog

Layout = Literal["parquet", "folders"]

# The reference's list, compared case-insensitively.
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
PARQUET_SUFFIX = ".parquet"
# The stored image payload: the image name and its class.
NAME_FIELD = "name"
LABEL_FIELD = "label"
HF_METADATA_KEY = b"huggingface"
ID_COLUMNS: tuple[str, ...] = ("image_id", "id")

# Rows per parquet batch: small, because each row carries a whole encoded image.
_IMAGE_BATCH_ROWS = 64
_LABEL_BATCH_ROWS = 65_536
_FINGERPRINT_HEX_CHARS = 16
# Parquet data sets whose name -> row index is kept for thumbnails (the landform sets are small).
_INDEXED_DATASETS = 8


# ----------------------------------------------------------------------------- pure helpers


def is_image_file_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def class_names_from_hf_metadata(metadata: Mapping[bytes, bytes] | None) -> list[str] | None:
    """Label names from a parquet schema's b"huggingface" metadata, or None when it has none.

    `datasets` writes `{"info": {"features": {"label": {"_type": "ClassLabel", "names": [...]}}}}`;
    a bare `{"features": ...}` is accepted too. An empty name list counts as no names, as in the
    reference (it tests the list for truth).
    """
    if not metadata or HF_METADATA_KEY not in metadata:
        return None
    try:
        document = json.loads(metadata[HF_METADATA_KEY])
    except (ValueError, UnicodeDecodeError) as exc:
        # Guessing names from label values would silently rename every class: refuse instead.
        raise DatasetError(f"unreadable Hugging Face feature metadata in the parquet schema: {exc}") from exc
    if not isinstance(document, dict):
        return None
    info = document.get("info")
    features = info.get("features") if isinstance(info, dict) else None
    if features is None:
        features = document.get("features")
    label = features.get("label") if isinstance(features, dict) else None
    names = label.get("names") if isinstance(label, dict) else None
    if not isinstance(names, list) or not names:
        return None
    return [str(name) for name in names]


def row_image_name(image_id: object, id_: object, row_index: int) -> str:
    """The image name of a parquet row, as the reference forms it.

    The reference uses `row.get("image_id") or row.get("id") or str(index)`, so every *falsy* id
    (null, "", 0) falls through to the next candidate: an image whose `image_id` is 0 is named by
    its `id`, or by its global row index. Mirrored on purpose so that names (and thus relevance
    sets and tie order) match the reference's.
    """
    value = image_id or id_
    return str(value) if value else str(row_index)


def image_bytes_of(cell: object) -> bytes | None:
    """The encoded bytes of one `image` cell (Hugging Face struct {bytes, path}, or raw binary).

    A struct with only a `path` yields None: the reader does not follow paths out of the dataset.
    """
    if isinstance(cell, dict):
        cell = cell.get("bytes")
    if isinstance(cell, bytes | bytearray | memoryview) and len(cell) > 0:
        return bytes(cell)
    return None


def class_of_label(label: object, names: Sequence[str] | None) -> str | None:
    """The class name of a label value, or None when the label cannot name a class.

    With names (from the metadata) the label must be an integer index into them; without names
    the class is the label value as a string, as in the reference.
    """
    if label is None or isinstance(label, bool):
        return None
    if names is None:
        return str(label)
    if isinstance(label, int) and 0 <= label < len(names):
        return names[label]
    return None


def image_problem(data: bytes) -> str | None:
    """None when Pillow can parse and verify the encoded image, else a short reason."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except Exception as exc:  # Pillow signals bad data with many types (OSError, SyntaxError, ...)
        return f"corrupt image ({type(exc).__name__}: {exc})"
    return None


def fingerprint_of(entries: Sequence[tuple[str, int]]) -> str:
    """Short sha256 hex over (relative name, size) pairs, independent of their order."""
    digest = hashlib.sha256()
    for name, size in sorted(entries):
        digest.update(f"{name}\0{size}\n".encode())
    return digest.hexdigest()[:_FINGERPRINT_HEX_CHARS]


# ----------------------------------------------------------------------------- file system


def _parquet_files_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.name.endswith(PARQUET_SUFFIX) and p.is_file()]
    # Sorted by name: the global row index (the last id fallback) runs over shards in this order.
    return sorted(files, key=lambda p: p.name)


def _class_folders(root: Path) -> list[Path]:
    # Hidden folders are not classes: `huggingface_hub.snapshot_download` leaves a `.cache/` in the
    # dataset folder. (The reference lists it as a class but, holding no images, never queries it.)
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(folders, key=lambda p: p.name)


def _image_files_in(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if is_image_file_name(p.name) and p.is_file()]
    return sorted(files, key=lambda p: p.name)


def _holds_any_image(folders: Sequence[Path], confine: Confinement) -> bool:
    return any(
        is_image_file_name(p.name) and p.is_file()
        for folder in folders
        if confine.allows(folder)  # a folder linking out of the roots is not even listed
        for p in folder.iterdir()
    )


def _detect_layout(root: Path, confine: Confinement) -> tuple[Layout, list[Path]]:
    if not root.is_dir():
        raise DatasetError(f"landform dataset folder {root} does not exist or is not a folder")
    for folder in (root, root / "data"):
        shards = _parquet_files_in(folder)
        if shards:
            return "parquet", shards
    if _holds_any_image(_class_folders(root), confine):
        return "folders", []
    extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
    raise DatasetError(
        f"no landform data found in {root}: expected Hugging Face parquet shards (*{PARQUET_SUFFIX}) "
        f"in that folder or in its data/ subfolder, or one subfolder per class holding image files "
        f"({extensions})"
    )


# ----------------------------------------------------------------------------- the reader


class LandformDataset:
    """The landform retrieval images of one published `dataset/` folder.

    Record keys are image names; payloads are `{"name": image_name, "label": class_name}`.
    """

    def __init__(self, root: Path, *, roots: RootsArg = None) -> None:
        self._root = Path(root)
        # Links inside the folder must not lead out of the dataset roots (marsbench.datasets.confine).
        self._confine = Confinement.of(roots)
        self._confine.check(self._root)
        self._layout, found = _detect_layout(self._root, self._confine)
        # A parquet file linking out of the roots is never opened (not even its footer): reported
        # when the records are read, like an unreadable one.
        shards = [shard for shard in found if self._confine.allows(shard)]
        self._refused = [
            (shard, self._confine.problem(shard) or "") for shard in found if shard not in shards
        ]
        # A parquet file whose footer cannot be read (corrupt, truncated, not parquet) is skipped by
        # name when the records are read; the rest of the data set is indexed.
        self._shards, self._unreadable = (
            _readable_parquet(shards) if self._layout == "parquet" else (shards, [])
        )
        if self._layout == "parquet" and not self._shards:
            reasons = "; ".join(f"{path.name}: {why}" for path, why in [*self._refused, *self._unreadable])
            raise DatasetError(f"no readable parquet file in {self._root} ({reasons})")
        self._class_names: list[str] | None = None

    @property
    def root(self) -> Path:
        return self._root

    @property
    def layout(self) -> Layout:
        return self._layout

    def class_names(self) -> list[str]:
        """Every declared class, including ones with no images (those get no relevant set)."""
        if self._class_names is None:
            if self._layout == "folders":
                self._class_names = [p.name for p in _class_folders(self._root)]
            else:
                self._class_names = self._metadata_names() or self._distinct_label_names()
        return list(self._class_names)

    def count(self) -> int:
        """Candidate items before any skip: parquet rows from the footers, or image files."""
        if self._layout == "parquet":
            return sum(pq.read_metadata(shard).num_rows for shard in self._shards)
        return sum(len(_image_files_in(folder)) for folder in self._allowed_folders())

    def fingerprint(self) -> str:
        """Identifies this data variant by its files' relative names and sizes (not contents)."""
        files = self._shards if self._layout == "parquet" else list(self._folder_images())
        # Files outside the roots are not part of the data: not even their size is taken.
        files = [p for p in files if self._confine.allows(p)]
        entries = [(self._relative_name(p), p.stat().st_size) for p in files]
        return fingerprint_of([(f"{self._layout}:{name}", size) for name, size in entries])

    def iter_records(
        self,
        skips: SkipLog,
        *,
        verify: bool = False,
        skip_units: Collection[str] = (),
        on_unit_done: Callable[[str], None] | None = None,
    ) -> Iterator[ImageRecord]:
        """Streams the records in a stable order; every unusable item goes to `skips` with a reason.

        The landform sets are small, so the dataset is a single unit of no name: `skip_units` and
        `on_unit_done` exist for the indexer's uniform call and have no effect.

        Skipped: no image bytes, a label that names no class, a name already yielded, an unreadable
        file, and (with `verify`) an image Pillow cannot verify. Note the reference itself accepts
        truncated images (it sets `LOAD_TRUNCATED_IMAGES`), so `verify` may skip a few it would keep.
        """
        if self._layout == "parquet":
            yield from self._iter_parquet(skips, verify)
        else:
            yield from self._iter_folders(skips, verify)

    def read_image(self, payload: Mapping[str, object]) -> bytes:
        """The encoded image a stored payload names (`name`: the image name the reader gave it).

        Folders: the file at that relative name, which must lie in a class folder of this dataset.
        Parquet: the first row of that name (an index of the id columns, built once per dataset).
        ItemNotFound when there is no such image, DatasetError when the files cannot be read.
        """
        name = payload_text(payload, NAME_FIELD)
        try:
            if self._layout == "folders":
                return self._folder_image(name)
            return self._parquet_image(name)
        except (pa.ArrowException, OSError) as exc:
            raise DatasetError(f"cannot read image {name!r} of {self._root}: {exc}") from exc

    def _parquet_image(self, name: str) -> bytes:
        place = _row_index(tuple(file_stamp(shard) for shard in self._shards)).get(name)
        if place is None:
            raise ItemNotFound(f"no image named {name!r} in the parquet files of {self._root}")
        shard, row = place
        data = _row_image(self._shards[shard], row)
        if data is None:
            raise ItemNotFound(f"row {row} of {self._shards[shard].name} holds no image bytes")
        return data

    def _folder_image(self, name: str) -> bytes:
        parts = name.split("/")
        path = self._root.joinpath(*parts)
        sound = len(parts) == 2 and not parts[0].startswith(".") and ".." not in parts and "" not in parts
        if not sound or not is_image_file_name(name) or not path.is_file():
            raise ItemNotFound(f"no image {name!r} in the class folders of {self._root}")
        return self._confine.check(path).read_bytes()  # OutsideRoots: a link out of the roots

    # -- parquet

    def _metadata_names(self) -> list[str] | None:
        # Names come from the first shard, as `datasets` infers the features from the first file.
        return class_names_from_hf_metadata(pq.read_schema(self._shards[0]).metadata)

    def _distinct_label_names(self) -> list[str]:
        # No metadata: the reference's classes are the distinct label values as strings, sorted
        # as strings ("10" before "2"). Reads the label column only.
        values: set[str] = set()
        for shard in self._shards:
            with pq.ParquetFile(shard) as parquet:
                self._require_columns(shard, parquet.schema_arrow.names)
                for batch in parquet.iter_batches(batch_size=_LABEL_BATCH_ROWS, columns=["label"]):
                    labels = pc.unique(batch.column("label")).to_pylist()
                    values.update(str(v) for v in labels if v is not None and not isinstance(v, bool))
        return sorted(values)

    def _require_columns(self, shard: Path, columns: Sequence[str]) -> None:
        missing = [c for c in ("image", "label") if c not in columns]
        if missing:
            raise DatasetError(f"parquet shard {shard} lacks the column(s) {', '.join(missing)}")

    def _iter_parquet(self, skips: SkipLog, verify: bool) -> Iterator[ImageRecord]:
        for path, why in self._refused:
            skips.add(self._relative_name(path), f"parquet file refused, skipped whole: {why}")
        for path, why in self._unreadable:
            # Rows of later files named by position shift (its row count is unknown): said here.
            skips.add(self._relative_name(path), f"unreadable parquet file, skipped whole: {why}")
        names = self._metadata_names()
        seen: set[str] = set()
        row_index = 0  # global across the sorted shards, like the reference's concatenated dataset
        for shard in self._shards:
            try:
                rows = yield from self._iter_shard(shard, names, row_index, seen, skips, verify)
            except (pa.ArrowException, OSError) as exc:  # a data page damaged behind a sound footer
                skips.add(self._relative_name(shard), f"parquet file damaged, rest of it skipped: {exc}")
                rows = pq.read_metadata(shard).num_rows
            row_index += rows

    def _iter_shard(
        self,
        shard: Path,
        names: Sequence[str] | None,
        row_index: int,
        seen: set[str],
        skips: SkipLog,
        verify: bool,
    ) -> Generator[ImageRecord, None, int]:
        """The records of one parquet file; returns its row count."""
        start = row_index
        with pq.ParquetFile(shard) as parquet:
            available = parquet.schema_arrow.names
            self._require_columns(shard, available)
            id_columns = [c for c in ID_COLUMNS if c in available]
            batches = parquet.iter_batches(
                batch_size=_IMAGE_BATCH_ROWS, columns=["image", "label", *id_columns]
            )
            for batch in batches:
                images = batch.column("image").to_pylist()
                labels = batch.column("label").to_pylist()
                ids = {c: batch.column(c).to_pylist() for c in id_columns}
                for offset in range(batch.num_rows):
                    name = row_image_name(
                        ids["image_id"][offset] if "image_id" in ids else None,
                        ids["id"][offset] if "id" in ids else None,
                        row_index + offset,
                    )
                    record = self._parquet_record(
                        name, images[offset], labels[offset], names, seen, skips, verify
                    )
                    if record is not None:
                        yield record
                row_index += batch.num_rows
        return row_index - start

    @staticmethod
    def _parquet_record(
        name: str,
        image_cell: object,
        label: object,
        names: Sequence[str] | None,
        seen: set[str],
        skips: SkipLog,
        verify: bool,
    ) -> ImageRecord | None:
        data = image_bytes_of(image_cell)
        if data is None:
            skips.add(name, "no image bytes")
            return None
        class_name = class_of_label(label, names)
        if class_name is None:
            if label is None:
                skips.add(name, "missing label")
            else:
                classes = len(names or ())
                skips.add(name, f"label {label!r} is not a class index (there are {classes} classes)")
            return None
        return _accept(name, data, class_name, seen, skips, verify)

    # -- folders

    def _allowed_folders(self) -> list[Path]:
        return [folder for folder in _class_folders(self._root) if self._confine.allows(folder)]

    def _folder_images(self) -> Iterator[Path]:
        for folder in self._allowed_folders():
            yield from _image_files_in(folder)

    def _iter_folders(self, skips: SkipLog, verify: bool) -> Iterator[ImageRecord]:
        seen: set[str] = set()
        for folder in _class_folders(self._root):
            refused = self._confine.problem(folder)
            if refused is not None:  # a class folder linking out: one entry, its files never listed
                skips.add(self._relative_name(folder), f"class folder refused: {refused}")
                continue
            for path in _image_files_in(folder):
                name = self._relative_name(path)
                refused = self._confine.problem(path)
                if refused is not None:
                    skips.add(name, refused)
                    continue
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    skips.add(name, f"unreadable file ({exc.strerror or exc})")
                    continue
                if not data:
                    skips.add(name, "empty file")
                    continue
                record = _accept(name, data, folder.name, seen, skips, verify)
                if record is not None:
                    yield record

    def _relative_name(self, path: Path) -> str:
        return path.relative_to(self._root).as_posix()


def _accept(
    name: str, data: bytes, class_name: str, seen: set[str], skips: SkipLog, verify: bool
) -> ImageRecord | None:
    """The record for a row that has bytes and a class, unless its name repeats or it is corrupt.

    A name counts as taken only once a record with it was yielded, so a broken first row does not
    shadow a good later one.
    """
    if name in seen:
        skips.add(name, "duplicate image name")
        return None
    if verify:
        problem = image_problem(data)
        if problem is not None:
            skips.add(name, problem)
            return None
    seen.add(name)
    return ImageRecord(key=name, image=data, payload={NAME_FIELD: name, LABEL_FIELD: class_name})


@functools.lru_cache(maxsize=_INDEXED_DATASETS)
def _row_index(shards: tuple[FileStamp, ...]) -> dict[str, tuple[int, int]]:
    """Image name -> (file position, row within the file), named as `iter_records` names rows.

    Reads the id columns only. The global row index (the last naming fallback) runs over the files
    in order; a file damaged part-way still counts all its rows, as reading does.
    """
    index: dict[str, tuple[int, int]] = {}
    start = 0
    for position, stamp in enumerate(shards):
        with pq.ParquetFile(stamp.path) as parquet:
            rows = parquet.metadata.num_rows
            id_columns = [c for c in ID_COLUMNS if c in parquet.schema_arrow.names]
            ids: dict[str, list[object]] = {c: [] for c in id_columns}
            try:
                for batch in parquet.iter_batches(batch_size=_LABEL_BATCH_ROWS, columns=id_columns):
                    for column in id_columns:
                        ids[column].extend(batch.column(column).to_pylist())
            except (pa.ArrowException, OSError):
                pass  # rows past the damage were never indexed, so they cannot be asked for
            readable = len(ids[id_columns[0]]) if id_columns else rows
        for row in range(readable):
            image_id = ids["image_id"][row] if "image_id" in ids else None
            id_ = ids["id"][row] if "id" in ids else None
            index.setdefault(row_image_name(image_id, id_, start + row), (position, row))
        start += rows
    return index


def _row_image(shard: Path, row: int) -> bytes | None:
    """The image bytes of one row: reads only the row group holding it, image column only."""
    with pq.ParquetFile(shard) as parquet:
        first = 0
        for group in range(parquet.metadata.num_row_groups):
            count = parquet.metadata.row_group(group).num_rows
            if row < first + count:
                column = parquet.read_row_group(group, columns=["image"]).column("image")
                return image_bytes_of(column[row - first].as_py())
            first += count
    return None


def _readable_parquet(shards: Sequence[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The files whose footer reads, and why each other one does not."""
    readable, unreadable = [], []
    for shard in shards:
        try:
            pq.read_metadata(shard)
        except (pa.ArrowException, OSError) as exc:
            unreadable.append((shard, str(exc)))
        else:
            readable.append(shard)
    return readable, unreadable

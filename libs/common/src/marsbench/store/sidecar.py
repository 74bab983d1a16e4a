"""A flat copy of an embedded collection's vectors, point ids and geo positions, for bulk reads.

Reading 1.4 million 1024-d points back through the engine's `scroll` takes minutes; the evaluator's
warm index needs them all at once. So `EmbeddedStore` appends every point it upserts to a few raw
files beside the shard and memory-maps them on request (one copy of the vectors in memory, the
page cache's)::

    sidecar/ids.bin             16 bytes per row: the point id (UUID, big-endian)
    sidecar/vec.<name>.f32      float32 rows of each named vector
    sidecar/geo.<field>.f64     (lon, lat) float64 per row of each GEO payload index (NaN: none)
    sidecar/state.json          rows known durable (written after an fsync, at each store flush)

Rows are only appended (an id written twice has two rows: the last wins), and collected in memory
until about `_WRITE_BYTES` are pending or the store flushes, so that an upsert makes no write call
(each releases the GIL, and taking it back from the threads building points waits up to the
interpreter's switch interval). After a crash the files are cut back to the rows of the last flush.
The copy is trusted only once the store seals the collection:
`EmbeddedStore.seal` compacts it to one row per id, checks it holds exactly the collection's points
(rebuilding it from the engine otherwise) and records its sizes and checksums in the seal manifest;
a bulk read checks them again and falls back to nothing (the caller scrolls) when they disagree.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from marsbench.files import file_sha256, write_text_atomic

SIDECAR_DIR = "sidecar"
_STATE_FILE = "state.json"
_IDS_FILE = "ids.bin"
_FORMAT = 1
_ID_BYTES = 16
# Pending rows are written out once they reach this size (about 2,000 points of 1024 floats), and at
# every `sync`: memory stays bounded between flushes of the store however large its units are.
_WRITE_BYTES = 8 << 20


def _vec_file(name: str) -> str:
    return f"vec.{name}.f32"


def _geo_file(field: str) -> str:
    return f"geo.{field}.f64"


@dataclass(frozen=True)
class BulkPoints:
    """Every point of a collection at once: `vectors` is a read-only memory map, rows in write order."""

    ids: np.ndarray  # (N, 16) uint8: the UUID bytes; `id_strings` gives the canonical strings
    vectors: np.ndarray  # (N, D) float32
    lonlat: np.ndarray | None  # (N, 2) float64, or None when no geo field was asked for

    @property
    def count(self) -> int:
        return int(self.ids.shape[0])

    def id_strings(self) -> list[str]:
        return [str(uuid.UUID(bytes=row.tobytes())) for row in self.ids]

    def id_rank(self) -> np.ndarray:
        """Rank of each row's id in ascending canonical-string order (UUID byte order is the same)."""
        halves = self.ids.view(">u8").reshape(-1, 2)
        order = np.lexsort((halves[:, 1], halves[:, 0]))
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        return rank


class Sidecar:
    """The appendable files of one collection (not thread-safe: the caller holds the shard's lock)."""

    def __init__(self, folder: Path, vectors: Mapping[str, int], geo_fields: Sequence[str]) -> None:
        self.folder = folder
        self.vectors = dict(vectors)
        self.geo_fields = list(geo_fields)
        self._handles: dict[str, BinaryIO] = {}
        # Rows appended but not written yet, per file (see `_WRITE_BYTES`); counted in `rows`.
        self._pending: dict[str, bytearray] = {}
        self._pending_bytes = 0
        self.rows = 0

    # -- lifecycle ------------------------------------------------------------------------------

    @classmethod
    def open(cls, folder: Path, vectors: Mapping[str, int], geo_fields: Sequence[str]) -> Sidecar:
        """Open for appending; rows past the last durable mark (a crash) are cut off. A sidecar of
        another shape (vectors, geo fields) is started afresh."""
        state = read_state(folder)
        if state is None or state["vectors"] != dict(vectors) or state["geo"] != list(geo_fields):
            rows = 0
        else:
            rows = int(state["rows"])
        folder.mkdir(parents=True, exist_ok=True)
        sidecar = cls(folder, vectors, geo_fields)
        for name, width in sidecar._widths().items():
            handle = (folder / name).open("ab")
            handle.truncate(rows * width)
            handle.seek(rows * width)
            sidecar._handles[name] = handle
            sidecar._pending[name] = bytearray()
        sidecar.rows = rows
        sidecar._write_state()
        return sidecar

    def _widths(self) -> dict[str, int]:
        widths = {_IDS_FILE: _ID_BYTES}
        widths.update({_vec_file(n): 4 * d for n, d in self.vectors.items()})
        widths.update({_geo_file(f): 16 for f in self.geo_fields})
        return widths

    def append(
        self, ids: Sequence[str], vectors: Mapping[str, np.ndarray], lonlat: Mapping[str, np.ndarray]
    ) -> None:
        """Rows for points just written: `vectors[name]` is (n, d) float32, `lonlat[field]` (n, 2).
        Copied: the caller may reuse its arrays."""
        pieces = [(_IDS_FILE, memoryview(_id_bytes(ids)))]
        pieces += [
            (_vec_file(n), np.ascontiguousarray(vectors[n], dtype=np.float32).data) for n in self.vectors
        ]
        pieces += [
            (_geo_file(f), np.ascontiguousarray(lonlat[f], dtype=np.float64).data) for f in self.geo_fields
        ]
        for name, piece in pieces:
            if piece.nbytes:  # a view with a zero in its shape cannot be cast
                self._pending[name] += piece.cast("B")
                self._pending_bytes += piece.nbytes
        self.rows += len(ids)
        if self._pending_bytes >= _WRITE_BYTES:
            self._write_pending()

    def _write_pending(self) -> None:
        for name, pending in self._pending.items():
            self._handles[name].write(pending)
            pending.clear()
        self._pending_bytes = 0

    def sync(self) -> None:
        """Make the rows appended so far durable (fsync); `mark_durable` then records them."""
        self._write_pending()
        for handle in self._handles.values():
            handle.flush()
            os.fsync(handle.fileno())

    def mark_durable(self) -> None:
        self._write_state()

    def _write_state(self) -> None:
        state = {"format": _FORMAT, "rows": self.rows, "vectors": self.vectors, "geo": self.geo_fields}
        write_text_atomic(self.folder / _STATE_FILE, json.dumps(state) + "\n")

    def close(self) -> None:
        self._write_pending()  # not durable (no fsync): the next open keeps them only if marked so
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
        self._pending.clear()

    # -- sealing --------------------------------------------------------------------------------

    def unique_rows(self) -> np.ndarray:
        """Row numbers holding the last write of each id, in write order."""
        self._write_pending()
        self._handles[_IDS_FILE].flush()
        ids = np.fromfile(self.folder / _IDS_FILE, dtype=np.uint8, count=self.rows * _ID_BYTES)
        keys = ids.reshape(-1, _ID_BYTES).view("V16").ravel()
        # The last occurrence of each id: unique over the reversed array gives first-from-the-end.
        _, first_from_end = np.unique(keys[::-1], return_index=True)
        return np.sort(self.rows - 1 - first_from_end)

    def compact(self, keep: np.ndarray) -> None:
        """Keep only rows `keep` (ascending), rewriting each file (then durable)."""
        self.sync()
        for name, width in self._widths().items():
            path = self.folder / name
            old = np.memmap(path, dtype=np.uint8, mode="r", shape=(self.rows, width)) if self.rows else None
            tmp = path.with_name(path.name + ".tmp")
            with tmp.open("wb") as out:
                for start in range(0, len(keep), 65536):
                    assert old is not None
                    out.write(np.ascontiguousarray(old[keep[start : start + 65536]]).data)
                out.flush()
                os.fsync(out.fileno())
            del old
            self._handles[name].close()
            tmp.replace(path)
            self._handles[name] = path.open("ab")
        self.rows = len(keep)
        self._write_state()

    def reset(self) -> None:
        """Drop every row (before a rebuild)."""
        for pending in self._pending.values():
            pending.clear()
        self._pending_bytes = 0
        for handle in self._handles.values():
            handle.truncate(0)
            handle.seek(0)
        self.rows = 0
        self._write_state()

    def manifest(self) -> dict[str, Any]:
        """Sizes and checksums, for the seal manifest (after `sync`)."""
        return {
            "rows": self.rows,
            "vectors": self.vectors,
            "geo": self.geo_fields,
            "files": {
                name: {"size": (self.folder / name).stat().st_size, "sha256": file_sha256(self.folder / name)}
                for name in self._widths()
            },
        }


def _id_bytes(ids: Sequence[str]) -> bytes:
    """The 16 bytes of each UUID string, concatenated (a fast path for the canonical form)."""
    try:
        raw = bytes.fromhex("".join(ids).replace("-", ""))
        if len(raw) == _ID_BYTES * len(ids) and all(len(i) == 36 for i in ids):
            return raw
    except ValueError:
        pass
    return b"".join(uuid.UUID(i).bytes for i in ids)


def read_state(folder: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((folder / _STATE_FILE).read_text())
        if state.get("format") != _FORMAT:
            return None
        return {"rows": int(state["rows"]), "vectors": dict(state["vectors"]), "geo": list(state["geo"])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def geo_rows(payloads: Iterable[Mapping[str, Any]], field: str) -> np.ndarray:
    """(n, 2) lon/lat of a geo payload field; NaN where a point has none."""
    rows = []
    for payload in payloads:
        location = payload.get(field)
        if isinstance(location, Mapping) and "lon" in location and "lat" in location:
            rows.append((float(location["lon"]), float(location["lat"])))
        else:
            rows.append((float("nan"), float("nan")))
    return np.array(rows, dtype=np.float64).reshape(-1, 2)


def load_bulk(
    folder: Path, recorded: Mapping[str, Any], points: int, *, using: str, geo_field: str | None
) -> tuple[BulkPoints | None, str | None]:
    """Memory-map a sealed sidecar after checking it against the seal manifest's record of it and the
    collection's point count; (None, why) when it disagrees."""
    if int(recorded["rows"]) != points:
        return None, f"it holds {recorded['rows']} rows, the collection {points} points"
    if using not in recorded["vectors"]:
        return None, f"it holds no vector {using!r}"
    if geo_field is not None and geo_field not in recorded["geo"]:
        return None, f"it holds no geo field {geo_field!r}"
    wanted = [_IDS_FILE, _vec_file(using)] + ([_geo_file(geo_field)] if geo_field is not None else [])
    files: dict[str, dict[str, Any]] = recorded["files"]
    for name in wanted:
        path = folder / name
        if not path.is_file():
            return None, f"{name} is missing"
        if path.stat().st_size != files[name]["size"]:
            return None, f"{name} is {path.stat().st_size} bytes, {files[name]['size']} were recorded"
    for name in wanted:
        if file_sha256(folder / name) != files[name]["sha256"]:
            return None, f"{name} does not hold the bytes recorded at sealing (sha256 differs)"
    dim = int(recorded["vectors"][using])
    ids = np.fromfile(folder / _IDS_FILE, dtype=np.uint8).reshape(points, _ID_BYTES)
    vectors: np.ndarray
    if points:
        vectors = np.memmap(folder / _vec_file(using), dtype=np.float32, mode="r", shape=(points, dim))
    else:
        vectors = np.zeros((0, dim), dtype=np.float32)
    lonlat = None
    if geo_field is not None:
        lonlat = np.fromfile(folder / _geo_file(geo_field), dtype=np.float64).reshape(points, 2)
    return BulkPoints(ids=ids, vectors=vectors, lonlat=lonlat), None

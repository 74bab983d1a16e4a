"""The embedded Qdrant engine (``qdrant-edge-py``), running inside this process.

Layout under ``root``::

    collections/<name>/spec.json   what the collection holds; written first, so it lists the collection
    collections/<name>/shard/      the engine's shard (segments, its own config; a WAL if it was
                                   created before the store turned the WAL off)
    collections/<name>/lock        flock'ed while a process has the shard open
    collections/<name>/manifest.json  written by `seal` when an indexing job completes: the point
                                   count and the size and sha256 of every segment file
    collections/<name>/sidecar/    a flat copy of the points' ids, vectors and geo positions, appended
                                   per upsert, for bulk reads (`marsbench.store.sidecar`)

`upsert` applies points without flushing (a flush per 256 points was 75 % of the ingest time at 1.4
million points); `flush` is the durability point: the indexer calls it when a resumable unit is
finished, before recording the unit, and `seal` and `close` flush too. Points upserted after the last
flush may be lost in a crash.

The engine itself checks nothing when it opens a shard (measured, 0.9.0): a truncated id tracker
loads with fewer points, random bytes over a vector chunk change rankings, removed segments load as
an empty shard. So a sealed collection is checked against its manifest when it is opened (files,
sizes, checksums, then the count) and refused with `CollectionDamaged` if anything differs; the
first write after that removes the manifest, as the files are meant to change again.

Only one process may open a shard (two would overwrite each other's segments): the store holds an
exclusive `flock` on the collection's lock file while the shard is open, and a second process (or a
second `EmbeddedStore` in this one) gets `StoreLocked`. (The engine locks a shard's WAL itself, but
new shards have none, see `_edge_config`.) Within the process, a lock per shard serialises the calls
into it and keeps a shard from being closed or deleted under a running search; qdrant-edge 0.9.0 keeps
the GIL while it searches, updates and flushes (measured: a Python thread beside an `update` ran at 5 %
of its speed, and not at all during the I/O wait of a `flush`), so the lock costs no parallelism.
The engine builds no HNSW by itself (only an explicit ``optimize()`` would), so every search here is
a flat exact scan.
"""

from __future__ import annotations

import fcntl
import gzip
import io
import json
import logging
import os
import re
import shutil
import tarfile
import threading
import uuid
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from marsbench.files import file_sha256, write_text_atomic
from marsbench.store._common import (
    as_buffer,
    box_corners,
    canonical_ids,
    check_limit,
    check_same_vectors,
    check_spec,
    in_request_order,
    query_rows,
)
from marsbench.store.base import (
    CollectionDamaged,
    CollectionExists,
    CollectionInfo,
    CollectionMismatch,
    CollectionNotFound,
    CollectionSpec,
    Hit,
    PayloadIndex,
    Point,
    SearchFilter,
    SnapshotInvalid,
    SnapshotWritten,
    StoredPoint,
    StoreError,
)
from marsbench.store.sidecar import SIDECAR_DIR, BulkPoints, Sidecar, geo_rows, load_bulk

log = logging.getLogger(__name__)

_SPEC_FILE = "spec.json"
_SHARD_DIR = "shard"
_SPEC_FORMAT = 1
_MANIFEST_FILE = "manifest.json"
_LOCK_FILE = "lock"
_MANIFEST_FORMAT = 1
# Shard files the engine rewrites when it only opens, searches or closes a shard (measured on 0.9.0),
# so they cannot be checksummed: its own config and the payload tracker's journal. The WAL is left
# out too: what it held is in the segments once flushed, and the engine rotates its files.
_UNSEALED_NAMES = frozenset({"edge_config.json", "tracker_journal.dat"})
_UNSEALED_DIRS = frozenset({"wal"})
# Collection names become directory names: no separators, no leading dot.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# Snapshots (qdrant-edge 0.9.0 can unpack and apply a snapshot, but cannot write one): a tar of the
# collection's folder taken while its shard is closed, with this manifest first.
_SNAPSHOT_MANIFEST = "marsbench-snapshot.json"
_SNAPSHOT_KIND = "marsbench-embedded-collection"
_SNAPSHOT_FORMAT = 1
# How qdrant-edge 0.9.0 reports a WAL another open shard holds (it raises a bare Exception).
_LOCKED_MARKER = "WouldBlock"

_SCHEMA_TYPES = {
    PayloadIndex.KEYWORD: qe.PayloadSchemaType.Keyword,
    PayloadIndex.INTEGER: qe.PayloadSchemaType.Integer,
    PayloadIndex.FLOAT: qe.PayloadSchemaType.Float,
    PayloadIndex.GEO: qe.PayloadSchemaType.Geo,
}


class StoreLocked(StoreError):
    """A shard of the embedded store is open in another process."""


@dataclass(eq=False)
class _OpenShard:
    shard: qe.EdgeShard
    spec: CollectionSpec
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False
    sealed: bool = False  # a manifest describes the files now: the next write removes it
    sidecar: Sidecar | None = None  # opened at the first write of this process (see `_sidecar_for`)
    file_lock: int | None = None  # the descriptor holding the collection's flock (see `_lock_collection`)

    def unlock(self) -> None:
        """Drop this process's lock on the collection (once its shard is closed)."""
        if self.file_lock is not None:
            os.close(self.file_lock)  # closing drops the flock
            self.file_lock = None

    def release(self) -> None:
        """Close the shard and its sidecar, then unlock (caller holds `lock`)."""
        try:
            self.shard.close()
            if self.sidecar is not None:
                self.sidecar.close()
        finally:
            self.closed = True
            self.unlock()


class EmbeddedStore:
    """`VectorStore` over qdrant-edge shards kept under ``root``; safe to share between threads."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._collections = self.root / "collections"
        self._open: dict[str, _OpenShard] = {}
        # Guards `_open` and the on-disk layout (create, open, delete).
        self._lock = threading.Lock()

    def __enter__(self) -> EmbeddedStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- collections -------------------------------------------------------------------------

    def ensure_collection(self, spec: CollectionSpec) -> bool:
        check_spec(spec)
        if not _SAFE_NAME.fullmatch(spec.name):
            raise ValueError(f"collection name {spec.name!r} is not a safe directory name")
        with self._lock:
            existing = self._read_spec(spec.name)
            if existing is not None:
                check_same_vectors(spec, existing.vectors)
                self._add_payload_indexes(existing, spec)
                return False
            # Debris of an interrupted delete: the spec goes first, so nothing lists it.
            shutil.rmtree(self._dir(spec.name), ignore_errors=True)
            self._write_spec(spec)
            self._open[spec.name] = self._load(spec)
            return True

    def collection_info(self, name: str) -> CollectionInfo:
        with self._shard(name) as entry:
            points = entry.shard.count(qe.CountRequest(exact=True))
        return CollectionInfo(name=name, vectors=dict(entry.spec.vectors), points=points)

    def list_collections(self) -> list[CollectionInfo]:
        if not self._collections.is_dir():
            return []
        names = sorted(p.parent.name for p in self._collections.glob(f"*/{_SPEC_FILE}"))
        infos = []
        for name in names:
            try:
                infos.append(self.collection_info(name))
            except CollectionNotFound:
                continue  # deleted by another thread meanwhile
            except CollectionDamaged as exc:
                # Listed, so that it can be seen and re-indexed; it holds no point that can be trusted.
                spec = self._read_spec(name)
                vectors = dict(spec.vectors) if spec is not None else {}
                infos.append(CollectionInfo(name=name, vectors=vectors, points=0, damaged=exc.reason))
        return infos

    def delete_collection(self, name: str) -> bool:
        with self._lock:
            spec = self._read_spec(name)
            if spec is None:
                return False
            entry = self._open.pop(name, None) or self._load_for_delete(spec)
            if entry is not None:
                with entry.lock:
                    entry.release()
            (self._dir(name) / _SPEC_FILE).unlink()
            shutil.rmtree(self._dir(name))
            return True

    # -- points ------------------------------------------------------------------------------

    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        """Apply points; durable after the next `flush` (or `seal`, `close`), not on return."""
        with self._shard(collection) as entry:
            if not points:
                return
            # Built under the shard's lock: building the engine's points and its update both hold the
            # GIL, so nothing runs in parallel either way, but threads building beside an update
            # contend for the GIL: with 3 writer threads, ingest ran 1.45x faster built here, on 0.57
            # of the CPU time (benchmarks/store_ingest.py, docs/performance.md).
            operation = qe.UpdateOperation.upsert_points([_edge_point(p) for p in points])
            if entry.sealed:
                # The files are about to change: the manifest no longer describes them.
                self._manifest_path(collection).unlink(missing_ok=True)
                entry.sealed = False
            sidecar = self._sidecar_for(entry)
            entry.shard.update(operation)
            # After the engine took them: the sidecar never holds a row the engine refused.
            sidecar.append(
                [p.id for p in points],
                {name: np.stack([p.vectors[name] for p in points]) for name in sidecar.vectors},
                {f: geo_rows((p.payload for p in points), f) for f in sidecar.geo_fields},
            )

    def flush(self, collection: str) -> None:
        """Make every point upserted so far durable (sidecar fsynced first, then the engine)."""
        with self._shard(collection) as entry:
            self._flush_entry(entry)

    @staticmethod
    def _flush_entry(entry: _OpenShard) -> None:
        if entry.sidecar is not None:
            entry.sidecar.sync()
        entry.shard.flush()
        if entry.sidecar is not None:
            entry.sidecar.mark_durable()

    def bulk_read(self, collection: str, *, using: str, geo_field: str | None = None) -> BulkPoints | None:
        """Every point's id, vector `using` and (lon, lat) of `geo_field` at once, from the sidecar
        memory-mapped; None when the collection is not sealed or the sidecar disagrees with it (the
        caller then scrolls)."""
        with self._shard(collection) as entry:
            manifest = self._read_manifest(collection) if entry.sealed else None
            recorded = manifest.get("sidecar") if manifest is not None else None
            if manifest is None or recorded is None:
                return None
            points = entry.shard.count(qe.CountRequest(exact=True))
            if points != manifest["points"]:
                return None
            bulk, why = load_bulk(
                self._dir(collection) / SIDECAR_DIR, recorded, points, using=using, geo_field=geo_field
            )
        if bulk is None:
            log.warning("collection %s: not reading its sidecar: %s", collection, why)
        return bulk

    def count(self, collection: str) -> int:
        with self._shard(collection) as entry:
            return entry.shard.count(qe.CountRequest(exact=True))

    def seal(self, collection: str) -> None:
        with self._shard(collection) as entry:
            if entry.sealed:
                return  # checked on open (or sealed here) and not written since: the manifest holds
            self._flush_entry(entry)
            shard_dir = self._dir(collection) / _SHARD_DIR
            points = entry.shard.count(qe.CountRequest(exact=True))
            manifest: dict[str, Any] = {
                "format": _MANIFEST_FORMAT,
                "points": points,
                "files": {
                    rel: {"size": path.stat().st_size, "sha256": file_sha256(path)}
                    for rel, path in _sealed_files(shard_dir).items()
                },
            }
            sidecar = self._settled_sidecar(entry, points)
            if sidecar is not None:
                manifest["sidecar"] = sidecar.manifest()
            write_text_atomic(self._manifest_path(collection), json.dumps(manifest, indent=1) + "\n")
            entry.sealed = True

    def search_batch(
        self,
        collection: str,
        vectors: np.ndarray,
        *,
        using: str,
        limit: int,
        exact: bool = True,
        filter: SearchFilter | None = None,
        with_payload: bool = True,
    ) -> list[list[Hit]]:
        check_limit(limit)
        edge_filter = _edge_filter(filter)
        params = qe.SearchParams(exact=exact)
        requests = [
            qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest(row, using=using),
                filter=edge_filter,
                params=params,
                with_payload=with_payload,
                with_vector=False,
            )
            for row in query_rows(vectors)
        ]
        with self._shard(collection) as entry:
            if not requests:
                return []
            results = entry.shard.query_batch(qe.QueryBatchRequest(requests))
        return [[_hit(point) for point in points] for points in results]

    def retrieve(
        self, collection: str, ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[StoredPoint]:
        wanted = canonical_ids(ids)
        point_ids: list[qe.PointId] = [*wanted]  # the engine's list is invariant in its id union
        with self._shard(collection) as entry:
            records = entry.shard.retrieve(point_ids, True, with_vectors) if wanted else []
        return in_request_order(wanted, [_stored(r) for r in records])

    def scroll(
        self, collection: str, *, with_vectors: bool = False, batch_size: int = 1024
    ) -> Iterator[StoredPoint]:
        check_limit(batch_size)
        self._entry(collection)  # fail now, not at the first next()
        return self._pages(collection, with_vectors, batch_size)

    def export_snapshot(self, collection: str, dest: Path) -> SnapshotWritten:
        """A tar of the collection's spec and shard, taken while the shard is closed (the engine writes
        nothing then, so the files are one consistent state), with a manifest of every file's size and
        sha256 and the point count; searches and writes wait meanwhile. Written beside `dest` and
        renamed: a snapshot file is whole or absent."""
        partial = dest.with_name(f".{dest.name}.partial")
        with self._shard(collection) as entry:
            self._flush_entry(entry)
            points = entry.shard.count(qe.CountRequest(exact=True))
            folder = self._dir(collection)
            entry.shard.close()
            try:
                _write_snapshot(partial, folder, collection, points)
            finally:
                try:
                    entry.shard = qe.EdgeShard.load(str(folder / _SHARD_DIR), _edge_config(entry.spec))
                except Exception:
                    entry.closed = True  # `_entry` opens it afresh (and checks it) on the next call
                    entry.unlock()
                    raise
        partial.replace(dest)
        return SnapshotWritten(path=dest, points=points)

    def import_snapshot(self, path: Path, collection: str) -> CollectionInfo:
        """Unpack a snapshot `export_snapshot` wrote into a new collection `collection`, checking every
        file and the point count against its manifest first, then seal it. Unpacked in a staging
        folder and renamed into place: a failed import leaves nothing behind."""
        if not _SAFE_NAME.fullmatch(collection):
            raise ValueError(f"collection name {collection!r} is not a safe directory name")
        staging = self.root / "imports" / uuid.uuid4().hex
        try:
            manifest = _unpack_snapshot(path, staging)
            spec = CollectionSpec(
                name=collection,
                vectors={k: int(v) for k, v in manifest["spec"]["vectors"].items()},
                payload_indexes={k: PayloadIndex(v) for k, v in manifest["spec"]["payload_indexes"].items()},
            )
            (staging / _MANIFEST_FILE).unlink(missing_ok=True)  # a sealing manifest is written below
            with self._lock:
                if self._read_spec(collection) is not None:
                    raise CollectionExists(collection)
                shutil.rmtree(self._dir(collection), ignore_errors=True)  # debris of an interrupted delete
                self._collections.mkdir(parents=True, exist_ok=True)
                staging.rename(self._dir(collection))
                self._write_spec(spec)  # under its new name
                try:
                    entry = self._load(spec)
                    points = entry.shard.count(qe.CountRequest(exact=True))
                    if points != manifest["points"]:
                        entry.release()
                        raise SnapshotInvalid(
                            f"snapshot {path.name}: it opens with {points} points, its manifest says "
                            f"{manifest['points']}"
                        )
                except StoreError:
                    (self._dir(collection) / _SPEC_FILE).unlink(missing_ok=True)
                    shutil.rmtree(self._dir(collection), ignore_errors=True)
                    raise
                self._open[collection] = entry
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.seal(collection)  # damage done to it from now on is detected on open
        return self.collection_info(collection)

    def close(self) -> None:
        with self._lock:
            entries = list(self._open.values())
            self._open.clear()
            for entry in entries:
                with entry.lock:
                    if not entry.closed:
                        try:
                            self._flush_entry(entry)  # what was upserted since the last flush
                        except Exception:  # close the others regardless
                            log.exception("collection %s: flush at close failed", entry.spec.name)
                    entry.release()

    # -- internals ---------------------------------------------------------------------------

    def _sidecar_for(self, entry: _OpenShard) -> Sidecar:
        """The collection's sidecar, opened for appending (caller holds the shard's lock)."""
        if entry.sidecar is None:
            geo = sorted(f for f, t in entry.spec.payload_indexes.items() if t is PayloadIndex.GEO)
            entry.sidecar = Sidecar.open(self._dir(entry.spec.name) / SIDECAR_DIR, entry.spec.vectors, geo)
        return entry.sidecar

    def _settled_sidecar(self, entry: _OpenShard, points: int) -> Sidecar | None:
        """At sealing: the sidecar with one row per point of the collection, compacted after ids
        written twice, rebuilt from the engine when it lacks points (a crash after the engine kept
        points its last flush did not cover, an older collection written to again). None for a
        collection never written through this store (imported, empty)."""
        if entry.sidecar is None and not (self._dir(entry.spec.name) / SIDECAR_DIR).is_dir():
            return None
        sidecar = self._sidecar_for(entry)
        keep = sidecar.unique_rows()
        if len(keep) != points:
            # Every durable row is a point the engine holds (rows go in after the engine's update,
            # and are cut back to the last flush on open), so equal counts mean equal sets.
            log.warning("collection %s: sidecar holds %d of %d points; rebuilding it from the engine",
                        entry.spec.name, len(keep), points)  # fmt: skip
            self._rebuild_sidecar(entry, sidecar)
        elif len(keep) != sidecar.rows:
            sidecar.compact(keep)
        sidecar.sync()
        sidecar.mark_durable()
        return sidecar

    def _rebuild_sidecar(self, entry: _OpenShard, sidecar: Sidecar) -> None:
        sidecar.reset()
        offset: qe.PointId | None = None
        while True:
            request = qe.ScrollRequest(offset=offset, limit=1024, with_payload=True, with_vector=True)
            records, offset = entry.shard.scroll(request)
            stored = [_stored(r) for r in records]
            if stored:
                sidecar.append(
                    [p.id for p in stored],
                    {name: np.stack([p.vectors[name] for p in stored]) for name in sidecar.vectors},
                    {f: geo_rows((p.payload for p in stored), f) for f in sidecar.geo_fields},
                )
            if offset is None:
                return

    def _pages(self, collection: str, with_vectors: bool, batch_size: int) -> Iterator[StoredPoint]:
        offset: qe.PointId | None = None
        while True:
            request = qe.ScrollRequest(
                offset=offset, limit=batch_size, with_payload=True, with_vector=with_vectors
            )
            # The lock is held per page only, never while the caller consumes points.
            with self._shard(collection) as entry:
                records, offset = entry.shard.scroll(request)
            yield from (_stored(r) for r in records)
            if offset is None:
                return

    @contextmanager
    def _shard(self, name: str) -> Iterator[_OpenShard]:
        """The open shard of `name`, locked; engine failures become `StoreError`."""
        entry = self._entry(name)
        with entry.lock:
            if entry.closed:  # deleted or closed while we waited
                raise CollectionNotFound(name)
            try:
                yield entry
            except StoreError:
                raise
            except Exception as exc:  # qdrant-edge raises bare Exceptions
                raise StoreError(f"collection {name!r}: {exc}") from exc

    def _entry(self, name: str) -> _OpenShard:
        with self._lock:
            entry = self._open.get(name)
            if entry is None or entry.closed:  # closed: a shard that failed to reopen after a snapshot
                spec = self._read_spec(name)
                if spec is None:
                    raise CollectionNotFound(name)
                entry = self._open[name] = self._load(spec)
            return entry

    def _load(self, spec: CollectionSpec) -> _OpenShard:
        """Lock the collection and open (or, after an interrupted create, create) its shard; add missing
        payload indexes."""
        file_lock = _lock_collection(self._dir(spec.name) / _LOCK_FILE)
        if file_lock is None:
            raise StoreLocked(self._locked_message(spec.name))
        try:
            entry = self._open_locked(spec)
        except BaseException:
            os.close(file_lock)
            raise
        entry.file_lock = file_lock
        return entry

    def _open_locked(self, spec: CollectionSpec) -> _OpenShard:
        path = self._dir(spec.name) / _SHARD_DIR
        manifest = self._read_manifest(spec.name)
        if manifest is not None:
            # Before the engine opens it: removed segments would otherwise be re-created empty below.
            problem = _files_problem(path, manifest)
            if problem:
                raise CollectionDamaged(spec.name, problem)
        try:
            if (path / "segments").is_dir():
                shard = qe.EdgeShard.load(str(path), _edge_config(spec))
            else:
                shard = qe.EdgeShard.create(str(path), _edge_config(spec, create=True))
        except Exception as exc:
            if _LOCKED_MARKER in str(exc):
                raise StoreLocked(self._locked_message(spec.name)) from exc
            raise StoreError(f"cannot open collection {spec.name!r} at {path}: {exc}") from exc
        if manifest is not None:
            points = shard.count(qe.CountRequest(exact=True))
            if points != manifest["points"]:
                shard.close()
                raise CollectionDamaged(
                    spec.name, f"it holds {points} points, but {manifest['points']} were written"
                )
        try:
            _create_payload_indexes(shard, spec)
        except Exception as exc:
            shard.close()
            raise StoreError(f"collection {spec.name!r}: cannot index payload: {exc}") from exc
        return _OpenShard(shard=shard, spec=spec, sealed=manifest is not None)

    def _manifest_path(self, name: str) -> Path:
        return self._dir(name) / _MANIFEST_FILE

    def _read_manifest(self, name: str) -> dict[str, Any] | None:
        path = self._manifest_path(name)
        try:
            raw = json.loads(path.read_text())
            if not isinstance(raw, dict) or raw.get("format") != _MANIFEST_FORMAT:
                raise ValueError("not a manifest of this format")
            int(raw["points"])
            dict(raw["files"])
        except FileNotFoundError:
            return None  # never sealed, or written to since (an older collection, a job under way)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CollectionDamaged(name, f"its manifest {path} cannot be read ({exc})") from exc
        return raw

    def _load_for_delete(self, spec: CollectionSpec) -> _OpenShard | None:
        """Open the shard to take the engine's lock, so a shard another process uses stays intact;
        a shard that fails to open for any other reason is debris and may go."""
        try:
            return self._load(spec)
        except StoreLocked:
            raise
        except StoreError:
            return None

    def _add_payload_indexes(self, existing: CollectionSpec, spec: CollectionSpec) -> None:
        """Index the payload fields `spec` adds to an existing collection (caller holds `_lock`)."""
        old = existing.payload_indexes
        clashes = {f: t for f, t in spec.payload_indexes.items() if old.get(f, t) != t}
        if clashes:
            raise CollectionMismatch(
                f"collection {spec.name!r} indexes {dict(old)}; cannot re-index {clashes}"
            )
        if set(spec.payload_indexes) <= set(old):
            return
        merged = CollectionSpec(spec.name, dict(existing.vectors), {**old, **spec.payload_indexes})
        # Spec first: a shard that is not open now gets the new indexes when it next opens.
        self._write_spec(merged)
        entry = self._open.get(spec.name)
        if entry is not None:
            with entry.lock:
                try:
                    _create_payload_indexes(entry.shard, merged)
                except Exception as exc:  # qdrant-edge raises bare Exceptions
                    raise StoreError(f"collection {spec.name!r}: cannot index payload: {exc}") from exc
                entry.spec = merged

    def _dir(self, name: str) -> Path:
        return self._collections / name

    def _read_spec(self, name: str) -> CollectionSpec | None:
        if not _SAFE_NAME.fullmatch(name):
            return None  # such a collection cannot have been created
        path = self._dir(name) / _SPEC_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read the spec of collection {name!r} at {path}: {exc}") from exc
        return CollectionSpec(
            name=raw["name"],
            vectors={k: int(v) for k, v in raw["vectors"].items()},
            payload_indexes={k: PayloadIndex(v) for k, v in raw["payload_indexes"].items()},
        )

    def _write_spec(self, spec: CollectionSpec) -> None:
        raw: dict[str, Any] = {
            "format": _SPEC_FORMAT,
            "name": spec.name,
            "distance": "dot",
            "vectors": dict(spec.vectors),
            "payload_indexes": {k: str(v) for k, v in spec.payload_indexes.items()},
        }
        path = self._dir(spec.name) / _SPEC_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(raw, indent=2) + "\n")
        tmp.replace(path)  # atomic: readers see the old spec or the new one

    def _locked_message(self, name: str) -> str:
        return (
            f"collection {name!r} of the embedded Qdrant store at {self.root} is open in another "
            "process (or another EmbeddedStore in this one). One process owns the embedded store: "
            "run the services together with `marsbench serve`, or set QDRANT_URL to use a Qdrant "
            "server."
        )


def _lock_collection(path: Path) -> int | None:
    """An exclusive, non-blocking flock on `path` (created): the open descriptor holding it, or None
    when another process (or another descriptor in this one) holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _sealed_files(shard_dir: Path) -> dict[str, Path]:
    """The shard's files a manifest covers, by path relative to the shard."""
    files = {}
    for path in sorted(shard_dir.rglob("*")):
        rel = path.relative_to(shard_dir)
        if rel.parts[0] in _UNSEALED_DIRS or path.name in _UNSEALED_NAMES or not path.is_file():
            continue
        files[rel.as_posix()] = path
    return files


def _files_problem(shard_dir: Path, manifest: dict[str, Any]) -> str | None:
    """What differs between the shard's files and its manifest (None: nothing); sizes first, as
    they cost nothing, then checksums."""
    expected: dict[str, dict[str, Any]] = manifest["files"]
    present = _sealed_files(shard_dir)
    missing = sorted(set(expected) - set(present))
    if missing:
        return f"{len(missing)} of its {len(expected)} files are missing (e.g. {missing[0]})"
    for rel, want in expected.items():
        size = present[rel].stat().st_size
        if size != want["size"]:
            return f"{rel} is {size} bytes, but {want['size']} were written"
    for rel, want in expected.items():
        if file_sha256(present[rel]) != want["sha256"]:
            return f"{rel} does not hold the bytes that were written (sha256 differs)"
    return None


def _write_snapshot(dest: Path, folder: Path, collection: str, points: int) -> None:
    """Tar the collection's folder (spec and shard; its sealing manifest and its sidecar, a copy of
    what the shard holds, are not needed) into `dest`, the manifest first. The folder must not change
    meanwhile (the caller holds the shard closed)."""
    files = {
        path.relative_to(folder).as_posix(): path
        for path in sorted(folder.rglob("*"))
        if path.is_file()
        and path.name != _MANIFEST_FILE
        and path.relative_to(folder).as_posix() != _LOCK_FILE
        and path.relative_to(folder).parts[0] != SIDECAR_DIR
    }
    spec = json.loads((folder / _SPEC_FILE).read_text())
    manifest = {
        "format": _SNAPSHOT_FORMAT,
        "kind": _SNAPSHOT_KIND,
        "engine": "qdrant-edge-py " + _engine_version(),
        "collection": collection,
        "points": points,
        "spec": {"vectors": spec["vectors"], "payload_indexes": spec["payload_indexes"]},
        "files": {rel: {"size": p.stat().st_size, "sha256": file_sha256(p)} for rel, p in files.items()},
    }
    body = (json.dumps(manifest, indent=1) + "\n").encode()
    try:
        # gzip at its fastest: the engine preallocates files (a 50-point shard is 140 MB, mostly zeros).
        with tarfile.open(dest, "w:gz", compresslevel=1) as tar:
            info = tarfile.TarInfo(_SNAPSHOT_MANIFEST)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
            for rel, path in files.items():
                tar.add(path, arcname=rel, recursive=False)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def _unpack_snapshot(path: Path, target: Path) -> dict[str, Any]:
    """Extract a snapshot into `target` (created) and check it whole; returns its manifest."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            member = tar.next()
            if member is None or member.name != _SNAPSHOT_MANIFEST or not member.isfile():
                raise SnapshotInvalid(f"{path.name} is not a snapshot of the embedded store (no manifest)")
            raw = tar.extractfile(member)
            manifest = json.loads(raw.read()) if raw is not None else None
            if not isinstance(manifest, dict) or manifest.get("kind") != _SNAPSHOT_KIND:
                raise SnapshotInvalid(f"{path.name} is not a snapshot of the embedded store")
            if manifest.get("format") != _SNAPSHOT_FORMAT:
                raise SnapshotInvalid(f"{path.name}: snapshot format {manifest.get('format')!r} is not known")
            expected: dict[str, dict[str, Any]] = manifest["files"]
            int(manifest["points"])
            for rel in expected:
                parts = Path(rel).parts
                if not parts or Path(rel).is_absolute() or ".." in parts:
                    raise SnapshotInvalid(f"{path.name}: unsafe path {rel[:200]!r} in its manifest")
            members = [m for m in tar.getmembers() if m.name != _SNAPSHOT_MANIFEST]
            for m in members:
                if not (m.isfile() or m.isdir()) or (m.isfile() and m.name not in expected):
                    raise SnapshotInvalid(f"{path.name}: unexpected entry {m.name[:200]!r}")
            target.mkdir(parents=True)
            # The "data" filter refuses absolute paths, '..', links and devices as well.
            tar.extractall(target, members=members, filter="data")
    except (tarfile.TarError, zlib.error, EOFError, gzip.BadGzipFile, ValueError, KeyError, TypeError) as exc:
        raise SnapshotInvalid(f"{path.name} is not a readable snapshot: {exc}") from exc
    for rel, want in expected.items():
        file = target / rel
        if not file.is_file():
            raise SnapshotInvalid(f"{path.name}: {rel} is missing")
        if file.stat().st_size != want["size"] or file_sha256(file) != want["sha256"]:
            raise SnapshotInvalid(f"{path.name}: {rel} does not hold the bytes that were exported")
    if _SPEC_FILE not in expected or not any(rel.startswith(f"{_SHARD_DIR}/") for rel in expected):
        raise SnapshotInvalid(f"{path.name}: it holds no collection spec or shard")
    return manifest


def _engine_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("qdrant-edge-py")
    except PackageNotFoundError:
        return "unknown"


def _edge_config(spec: CollectionSpec, *, create: bool = False) -> qe.EdgeConfig:
    """The engine's config of a collection: for a new shard (`create`), or to open one (which keeps
    the WAL setting it was created with: the engine refuses to load a shard with another)."""
    # Dot, not Cosine: vectors arrive L2-normalised and are stored (and returned) unchanged.
    vectors = {
        name: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Dot) for name, dim in spec.vectors.items()
    }
    # New shards have no write-ahead log: `flush` is the store's durability point, and without a WAL
    # the engine makes updates durable exactly when flush() returns. The WAL wrote every point a
    # second time and took a third of `update` (26 against 41 us of CPU per 1024-d point, measured
    # with benchmarks/store_ingest.py). Shards created before keep theirs.
    return qe.EdgeConfig(vectors=vectors, wal_enabled=False if create else None)


def _create_payload_indexes(shard: qe.EdgeShard, spec: CollectionSpec) -> None:
    present = shard.info().payload_schema
    missing = {f: t for f, t in spec.payload_indexes.items() if f not in present}
    for field_name, index in missing.items():
        shard.update(qe.UpdateOperation.create_field_index(field_name, _SCHEMA_TYPES[index]))
    if missing:
        shard.flush()


def _edge_point(point: Point) -> qe.Point:
    vectors = {name: as_buffer(v) for name, v in point.vectors.items()}
    # The stub names lists only; the engine reads any sequence, and a memoryview is the fastest (as_buffer).
    return qe.Point(point.id, vectors, dict(point.payload))  # type: ignore[arg-type]


def _edge_filter(search_filter: SearchFilter | None) -> qe.Filter | None:
    if search_filter is None:
        return None
    must: list[qe.ConditionType] = [
        qe.FieldCondition(key, match=qe.MatchValue(value)) for key, value in search_filter.match.items()
    ]
    if (box := search_filter.geo_box) is not None:
        lon_min, lat_min, lon_max, lat_max = box_corners(box)
        corners = qe.GeoBoundingBox(
            top_left=qe.GeoPoint(lon=lon_min, lat=lat_max), bottom_right=qe.GeoPoint(lon=lon_max, lat=lat_min)
        )
        must.append(qe.FieldCondition(box.field, geo_bounding_box=corners))
    if (circle := search_filter.geo_radius) is not None:
        center = qe.GeoPoint(lon=circle.lon, lat=circle.lat)
        radius = qe.GeoRadius(center=center, radius=circle.radius_m)
        must.append(qe.FieldCondition(circle.field, geo_radius=radius))
    return qe.Filter(must=must) if must else None


def _hit(point: qe.ScoredPoint) -> Hit:
    return Hit(id=str(point.id), score=float(point.score), payload=dict(point.payload or {}))


def _stored(record: qe.Record) -> StoredPoint:
    vectors = record.vector if isinstance(record.vector, dict) else {}
    return StoredPoint(
        id=str(record.id),
        payload=dict(record.payload or {}),
        vectors={name: np.asarray(v, dtype=np.float32) for name, v in vectors.items()},
    )

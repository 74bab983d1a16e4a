"""A Qdrant server or cluster through qdrant-client (REST).

Tests hand in a local-mode client (``QdrantClient(location=":memory:")`` or ``path=...``): pure
Python brute force, fine for the contract tests, far too slow for real collections.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from marsbench.files import file_sha256
from marsbench.store._common import (
    as_floats,
    box_corners,
    canonical_ids,
    check_limit,
    check_same_vectors,
    check_spec,
    in_request_order,
    query_rows,
)
from marsbench.store.base import (
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
    StoreUnavailable,
)
from marsbench.store.sidecar import BulkPoints

# What qdrant-client raises for a failed call: the server's answer, a transport failure, or (in
# local mode) a ValueError such as "Collection x not found".
_CLIENT_ERRORS = (UnexpectedResponse, ResponseHandlingException, ValueError)
# Answers of a server (or its proxy) that is restarting or overloaded: the call may succeed later.
_UNAVAILABLE_STATUS = {502, 503, 504}

_SCHEMA_TYPES = {
    PayloadIndex.KEYWORD: models.PayloadSchemaType.KEYWORD,
    PayloadIndex.INTEGER: models.PayloadSchemaType.INTEGER,
    PayloadIndex.FLOAT: models.PayloadSchemaType.FLOAT,
    PayloadIndex.GEO: models.PayloadSchemaType.GEO,
}


class ServerStore:
    """`VectorStore` over a Qdrant server or cluster.

    `shard_number`, `replication_factor` and `write_consistency_factor` (services: `QDRANT_SHARD_NUMBER`,
    ... in `StoreSettings`) go to `create_collection` for the collections this store creates; None
    leaves the server's default. An existing collection keeps the layout it was created with.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        client: QdrantClient | None = None,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        write_consistency_factor: int | None = None,
        timeout: float = 60,
    ) -> None:
        if client is None and url is None:
            raise ValueError("ServerStore needs a server url or a QdrantClient")
        # An injected client belongs to the caller, who closes it.
        self._owns_client = client is None
        self._client = client or QdrantClient(url=url, api_key=api_key, timeout=math.ceil(timeout))
        # Snapshot files move over REST, which qdrant-client does not wrap: they need the URL.
        self._url = url.rstrip("/") if url else None
        self._api_key = api_key
        self._timeout = timeout
        self._shard_number = shard_number
        self._replication_factor = replication_factor
        self._write_consistency_factor = write_consistency_factor

    def __enter__(self) -> ServerStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- collections -------------------------------------------------------------------------

    def ensure_collection(self, spec: CollectionSpec) -> bool:
        check_spec(spec)
        if not self._exists(spec.name) and self._create(spec):
            return True
        # It existed, or another process created it between our check and our create.
        with self._errors(spec.name):
            info = self._client.get_collection(spec.name)
        check_same_vectors(spec, _vector_dims(info))
        self._add_payload_indexes(spec, info)
        return False

    def collection_info(self, name: str) -> CollectionInfo:
        with self._errors(name):
            info = self._client.get_collection(name)
        return CollectionInfo(name=name, vectors=_vector_dims(info), points=self.count(name))

    def list_collections(self) -> list[CollectionInfo]:
        with self._errors(""):
            names = sorted(c.name for c in self._client.get_collections().collections)
        infos = []
        for name in names:
            try:
                infos.append(self.collection_info(name))
            except CollectionNotFound:
                continue  # deleted by someone else meanwhile
        return infos

    def delete_collection(self, name: str) -> bool:
        if not self._exists(name):
            return False
        with self._errors(name):
            self._client.delete_collection(name)
        return True

    # -- points ------------------------------------------------------------------------------

    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        if not points:
            self._require(collection)
            return
        structs = [
            models.PointStruct(
                id=p.id,
                vector={name: as_floats(v) for name, v in p.vectors.items()},
                payload=dict(p.payload),
            )
            for p in points
        ]
        with self._errors(collection):
            # wait=True: applied (and in the WAL) when it returns.
            self._client.upsert(collection, points=structs, wait=True)

    def flush(self, collection: str) -> None:
        # Every upsert waits (wait=True) until the server applied it and wrote its WAL: nothing to do.
        self._require(collection)

    def bulk_read(self, collection: str, *, using: str, geo_field: str | None = None) -> BulkPoints | None:
        return None  # the server keeps no flat copy: callers scroll

    def count(self, collection: str) -> int:
        with self._errors(collection):
            return self._client.count(collection, exact=True).count

    def seal(self, collection: str) -> None:
        # The server owns its storage and its integrity checks (WAL, snapshots); nothing to record here.
        # The evaluator still compares the point count with what the indexing job wrote.
        return None

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
        query_filter = _query_filter(filter)
        # exact=True bypasses HNSW and quantization: the ground truth needs the true top-k.
        params = models.SearchParams(exact=exact)
        requests = [
            models.QueryRequest(
                query=row,
                using=using,
                limit=limit,
                filter=query_filter,
                params=params,
                with_payload=with_payload,
                with_vector=False,
            )
            for row in query_rows(vectors)
        ]
        if not requests:
            self._require(collection)
            return []
        with self._errors(collection):
            responses = self._client.query_batch_points(collection, requests=requests)
        return [[_hit(point) for point in response.points] for response in responses]

    def retrieve(
        self, collection: str, ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[StoredPoint]:
        wanted = canonical_ids(ids)
        if not wanted:
            self._require(collection)
            return []
        with self._errors(collection):
            records = self._client.retrieve(
                collection, ids=wanted, with_payload=True, with_vectors=with_vectors
            )
        return in_request_order(wanted, [_stored(r) for r in records])

    def scroll(
        self, collection: str, *, with_vectors: bool = False, batch_size: int = 1024
    ) -> Iterator[StoredPoint]:
        check_limit(batch_size)
        self._require(collection)  # fail now, not at the first next()
        return self._pages(collection, with_vectors, batch_size)

    def export_snapshot(self, collection: str, dest: Path) -> SnapshotWritten:
        """The server's own snapshot of the collection (`create_snapshot`), downloaded to `dest`, then
        deleted on the server. A collection spread over a cluster is snapshotted by the node asked,
        which gathers its shards."""
        url = self._snapshot_url()
        self._require(collection)
        points = self.count(collection)
        with self._errors(collection):
            snapshot = self._client.create_snapshot(collection, wait=True)
        if snapshot is None:
            raise StoreError(f"collection {collection!r}: the server made no snapshot")
        partial = dest.with_name(f".{dest.name}.partial")
        digest = hashlib.sha256()
        try:
            with (
                self._http() as http,
                http.stream("GET", f"{url}/collections/{collection}/snapshots/{snapshot.name}") as answer,
            ):
                _raise_for(answer, f"downloading snapshot {snapshot.name}")
                with partial.open("wb") as out:
                    for chunk in answer.iter_bytes(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
            if snapshot.checksum and snapshot.checksum != digest.hexdigest():
                raise StoreError(f"snapshot {snapshot.name} arrived damaged (sha256 differs)")
            partial.replace(dest)
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"Qdrant at {url}: downloading snapshot {snapshot.name}: {exc}") from exc
        finally:
            partial.unlink(missing_ok=True)
            with self._errors(collection):
                self._client.delete_snapshot(collection, snapshot.name, wait=True)
        return SnapshotWritten(path=dest, points=points)

    def import_snapshot(self, path: Path, collection: str) -> CollectionInfo:
        """Upload a snapshot file to the server, which recovers `collection` from it (the REST upload
        endpoint: `recover_snapshot` would need a location the server itself can read)."""
        url = self._snapshot_url()
        if self._exists(collection):
            raise CollectionExists(collection)
        params = {"wait": "true", "priority": "snapshot", "checksum": file_sha256(path)}
        try:
            with self._http() as http, path.open("rb") as snapshot:
                answer = http.post(
                    f"{url}/collections/{collection}/snapshots/upload",
                    params=params,
                    files={"snapshot": (path.name, snapshot, "application/octet-stream")},
                )
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"Qdrant at {url}: uploading snapshot {path.name}: {exc}") from exc
        if 400 <= answer.status_code < 500:
            raise SnapshotInvalid(f"Qdrant refused snapshot {path.name}: {answer.text[:500]}")
        _raise_for(answer, f"uploading snapshot {path.name}")
        return self.collection_info(collection)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    # -- internals ---------------------------------------------------------------------------

    def _pages(self, collection: str, with_vectors: bool, batch_size: int) -> Iterator[StoredPoint]:
        offset: models.ExtendedPointId | None = None
        while True:
            with self._errors(collection):
                records, offset = self._client.scroll(
                    collection,
                    limit=batch_size,
                    offset=offset,
                    with_payload=True,
                    with_vectors=with_vectors,
                )
            yield from (_stored(r) for r in records)
            if offset is None:
                return

    def _create(self, spec: CollectionSpec) -> bool:
        """Create the collection and its payload indexes; False if someone else created it first."""
        vectors = {
            name: models.VectorParams(size=dim, distance=models.Distance.DOT)
            for name, dim in spec.vectors.items()
        }
        try:
            self._client.create_collection(
                spec.name,
                vectors_config=vectors,
                shard_number=self._shard_number,
                replication_factor=self._replication_factor,
                write_consistency_factor=self._write_consistency_factor,
            )
        except _CLIENT_ERRORS as exc:
            if self._exists(spec.name):
                return False
            raise StoreError(f"cannot create collection {spec.name!r}: {exc}") from exc
        # Before any upload: indexing an empty collection is free, a full one is not.
        self._create_payload_indexes(spec.name, spec.payload_indexes)
        return True

    def _add_payload_indexes(self, spec: CollectionSpec, info: models.CollectionInfo) -> None:
        """Index the payload fields `spec` adds to an existing collection."""
        present = {name: schema.data_type for name, schema in info.payload_schema.items()}
        wanted = {f: _SCHEMA_TYPES[t] for f, t in spec.payload_indexes.items()}
        clashes = {f: t for f, t in wanted.items() if present.get(f, t) != t}
        if clashes:
            raise CollectionMismatch(f"collection {spec.name!r} indexes {present}; cannot re-index {clashes}")
        missing = {f: t for f, t in spec.payload_indexes.items() if f not in present}
        self._create_payload_indexes(spec.name, missing)

    def _create_payload_indexes(self, name: str, indexes: Mapping[str, PayloadIndex]) -> None:
        for field_name, index in indexes.items():
            with self._errors(name):
                self._client.create_payload_index(
                    name, field_name=field_name, field_schema=_SCHEMA_TYPES[index], wait=True
                )

    def _exists(self, name: str) -> bool:
        with self._errors(""):
            return self._client.collection_exists(name)

    def _require(self, name: str) -> None:
        if not self._exists(name):
            raise CollectionNotFound(name)

    @contextmanager
    def _errors(self, collection: str) -> Iterator[None]:
        """Client failures become `StoreError`, or `CollectionNotFound` when that is the cause."""
        try:
            yield
        except _CLIENT_ERRORS as exc:
            if _unavailable(exc):
                raise StoreUnavailable(f"Qdrant at {self._where()} did not answer: {exc}") from exc
            # Ask rather than parse messages: REST, gRPC and local mode word "not found" differently.
            if collection and not self._exists_or_unknown(collection):
                raise CollectionNotFound(collection) from exc
            where = f"collection {collection!r}" if collection else "Qdrant"
            raise StoreError(f"{where}: {exc}") from exc

    def _snapshot_url(self) -> str:
        if self._url is None:
            raise StoreError("snapshots need a Qdrant server URL (not an injected or local-mode client)")
        return self._url

    def _http(self) -> httpx.Client:
        headers = {"api-key": self._api_key} if self._api_key else {}
        return httpx.Client(headers=headers, timeout=httpx.Timeout(self._timeout, read=None))

    def _where(self) -> str:
        rest = getattr(self._client, "_client", None)  # the REST transport knows its base URL
        return str(getattr(rest, "rest_uri", None) or "the configured URL")

    def _exists_or_unknown(self, name: str) -> bool:
        try:
            return self._client.collection_exists(name)
        except _CLIENT_ERRORS:
            return True  # the server is unreachable: report the original failure


def _raise_for(answer: httpx.Response, what: str) -> None:
    if answer.status_code in _UNAVAILABLE_STATUS:
        raise StoreUnavailable(f"Qdrant answered {answer.status_code} {what}")
    if answer.status_code >= 400:
        answer.read()
        raise StoreError(f"Qdrant answered {answer.status_code} {what}: {answer.text[:500]}")


def _unavailable(exc: Exception) -> bool:
    """A transport failure (refused, reset, timed out) or a gateway/unavailable answer."""
    if isinstance(exc, ResponseHandlingException):
        return True
    return isinstance(exc, UnexpectedResponse) and exc.status_code in _UNAVAILABLE_STATUS


def _vector_dims(info: models.CollectionInfo) -> dict[str, int]:
    vectors = info.config.params.vectors
    if vectors is None:
        return {}
    if isinstance(vectors, models.VectorParams):
        return {"": vectors.size}  # an unnamed vector, from a collection marsbench did not create
    return {name: params.size for name, params in vectors.items()}


def _query_filter(search_filter: SearchFilter | None) -> models.Filter | None:
    if search_filter is None:
        return None
    must: list[models.Condition] = [
        models.FieldCondition(key=key, match=models.MatchValue(value=value))
        for key, value in search_filter.match.items()
    ]
    if (box := search_filter.geo_box) is not None:
        lon_min, lat_min, lon_max, lat_max = box_corners(box)
        corners = models.GeoBoundingBox(
            top_left=models.GeoPoint(lon=lon_min, lat=lat_max),
            bottom_right=models.GeoPoint(lon=lon_max, lat=lat_min),
        )
        must.append(models.FieldCondition(key=box.field, geo_bounding_box=corners))
    if (circle := search_filter.geo_radius) is not None:
        center = models.GeoPoint(lon=circle.lon, lat=circle.lat)
        radius = models.GeoRadius(center=center, radius=circle.radius_m)
        must.append(models.FieldCondition(key=circle.field, geo_radius=radius))
    return models.Filter(must=must) if must else None


def _hit(point: models.ScoredPoint) -> Hit:
    return Hit(id=str(point.id), score=float(point.score), payload=dict(point.payload or {}))


def _stored(record: models.Record) -> StoredPoint:
    vectors = record.vector if isinstance(record.vector, dict) else {}
    return StoredPoint(
        id=str(record.id),
        payload=dict(record.payload or {}),
        vectors={name: np.asarray(v, dtype=np.float32) for name, v in vectors.items()},
    )

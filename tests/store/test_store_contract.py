"""The `VectorStore` contract, run against every backend.

Backends: the embedded engine (in tmp_path), qdrant-client local mode (in memory), and a real
Qdrant server when QDRANT_URL is set. Every test uses its own collection name, so a shared
server is safe; the fixture deletes what the test created.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from marsbench.store import (
    CollectionExists,
    CollectionMismatch,
    CollectionNotFound,
    CollectionSpec,
    EmbeddedStore,
    GeoBox,
    GeoRadius,
    PayloadIndex,
    Point,
    SearchFilter,
    ServerStore,
    SnapshotInvalid,
    StoreError,
    VectorStore,
    point_id,
)

pytestmark = [
    # Local mode says, once per run, that it ignores payload indexes and search params.
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning"),
    pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning"),
]

N_POINTS = 240
DIM = 16
LABELS = ("crater", "dune", "channel", "mound")
PREFIX = "mbtest_"
EARTH_RADIUS_M = 6_371_000.0

BACKENDS = [
    pytest.param("embedded", id="embedded"),
    pytest.param("client-local", id="client-local"),
    pytest.param(
        "server",
        id="server",
        marks=[
            pytest.mark.server,
            pytest.mark.skipif(
                not os.environ.get("QDRANT_URL"),
                reason="set QDRANT_URL to run the contract against a Qdrant server",
            ),
        ],
    ),
]


@dataclass(frozen=True)
class Corpus:
    ids: list[str]
    image: np.ndarray
    text: np.ndarray
    payloads: list[dict[str, object]]

    def points(self) -> list[Point]:
        return [
            Point(id=i, vectors={"image": img, "text": txt}, payload=payload)
            for i, img, txt, payload in zip(self.ids, self.image, self.text, self.payloads, strict=True)
        ]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    backend: VectorStore
    client: QdrantClient | None = None
    if request.param == "embedded":
        backend = EmbeddedStore(tmp_path / "qdrant")
    elif request.param == "client-local":
        client = QdrantClient(location=":memory:")
        backend = ServerStore(client=client)
    else:
        backend = ServerStore(os.environ["QDRANT_URL"], api_key=os.environ.get("QDRANT_API_KEY"))
    yield backend
    for info in backend.list_collections():
        if info.name.startswith(PREFIX):
            backend.delete_collection(info.name)
    backend.close()
    if client is not None:
        client.close()


@pytest.fixture
def name() -> str:
    return f"{PREFIX}{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    rng = np.random.default_rng(7)
    image = _normalised(rng.standard_normal((N_POINTS, DIM)))
    text = _normalised(rng.standard_normal((N_POINTS, DIM)))
    keys = [f"img_{i:04d}" for i in range(N_POINTS)]
    # A 16 x 15 grid of whole degrees: the geo filters below never cut through a point.
    payloads: list[dict[str, object]] = [
        {
            "key": key,
            "label": LABELS[i % len(LABELS)],
            "i": i,
            "loc": {"lon": float(i % 16 - 8), "lat": float(i // 16 - 7)},
        }
        for i, key in enumerate(keys)
    ]
    return Corpus(ids=[point_id(k) for k in keys], image=image, text=text, payloads=payloads)


def _normalised(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _spec(name: str, dim: int = DIM) -> CollectionSpec:
    return CollectionSpec(
        name=name,
        vectors={"image": dim, "text": dim},
        payload_indexes={"label": PayloadIndex.KEYWORD, "i": PayloadIndex.INTEGER, "loc": PayloadIndex.GEO},
    )


def _filled(store: VectorStore, name: str, corpus: Corpus) -> str:
    store.ensure_collection(_spec(name))
    points = corpus.points()
    for start in range(0, len(points), 64):
        store.upsert(name, points[start : start + 64])
    return name


def _brute_force(
    corpus: Corpus, queries: np.ndarray, k: int, using: str = "image", allowed: np.ndarray | None = None
) -> list[list[str]]:
    scores = queries @ getattr(corpus, using).T
    if allowed is not None:
        scores[:, ~allowed] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[corpus.ids[j] for j in row if np.isfinite(scores[q, j])] for q, row in enumerate(order)]


def _ids(hits: list[list[object]]) -> list[list[str]]:
    return [[h.id for h in row] for row in hits]  # type: ignore[attr-defined]


def _haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


# -- collections ---------------------------------------------------------------------------------


def test_backend_satisfies_the_protocol(store: VectorStore) -> None:
    assert isinstance(store, VectorStore)


def test_ensure_collection_is_idempotent(store: VectorStore, name: str) -> None:
    assert store.ensure_collection(_spec(name)) is True
    assert store.ensure_collection(_spec(name)) is False
    info = store.collection_info(name)
    assert (info.name, info.vectors, info.points) == (name, {"image": DIM, "text": DIM}, 0)


def test_ensure_collection_rejects_another_shape(store: VectorStore, name: str) -> None:
    store.ensure_collection(_spec(name))
    with pytest.raises(CollectionMismatch):
        store.ensure_collection(_spec(name, dim=DIM * 2))
    with pytest.raises(CollectionMismatch):
        store.ensure_collection(CollectionSpec(name=name, vectors={"image": DIM}))


def test_list_collections_reports_vectors_and_points(store: VectorStore, name: str, corpus: Corpus) -> None:
    other = f"{name}_b"
    _filled(store, name, corpus)
    store.ensure_collection(CollectionSpec(name=other, vectors={"image": 8}))
    infos = {i.name: i for i in store.list_collections() if i.name in (name, other)}
    assert infos[name].vectors == {"image": DIM, "text": DIM}
    assert infos[name].points == N_POINTS
    assert (infos[other].vectors, infos[other].points) == ({"image": 8}, 0)


def test_delete_collection(store: VectorStore, name: str, corpus: Corpus) -> None:
    _filled(store, name, corpus)
    assert store.delete_collection(name) is True
    assert store.delete_collection(name) is False
    assert name not in {i.name for i in store.list_collections()}
    with pytest.raises(CollectionNotFound):
        store.count(name)
    assert store.ensure_collection(_spec(name)) is True  # the name is free again
    assert store.count(name) == 0


def test_missing_collection_raises(store: VectorStore, name: str, corpus: Corpus) -> None:
    queries = corpus.image[:2]
    with pytest.raises(CollectionNotFound):
        store.search_batch(name, queries, using="image", limit=5)
    with pytest.raises(CollectionNotFound):
        store.count(name)
    with pytest.raises(CollectionNotFound):
        store.collection_info(name)
    with pytest.raises(CollectionNotFound):
        store.upsert(name, corpus.points()[:3])
    with pytest.raises(CollectionNotFound):
        store.retrieve(name, corpus.ids[:3])
    with pytest.raises(CollectionNotFound):
        store.scroll(name)


# -- points --------------------------------------------------------------------------------------


def test_upsert_and_count(store: VectorStore, name: str, corpus: Corpus) -> None:
    _filled(store, name, corpus)
    assert store.count(name) == N_POINTS


def test_upsert_same_ids_replaces(store: VectorStore, name: str, corpus: Corpus) -> None:
    _filled(store, name, corpus)
    changed = [Point(p.id, p.vectors, {**p.payload, "label": "renamed"}) for p in corpus.points()[:10]]
    store.upsert(name, changed)
    assert store.count(name) == N_POINTS
    got = store.retrieve(name, corpus.ids[:10])
    assert {p.payload["label"] for p in got} == {"renamed"}


def test_search_batch_matches_brute_force(store: VectorStore, name: str, corpus: Corpus) -> None:
    _filled(store, name, corpus)
    queries = _normalised(np.random.default_rng(1).standard_normal((5, DIM)))
    hits = store.search_batch(name, queries, using="image", limit=10)
    assert _ids(hits) == _brute_force(corpus, queries, 10)
    # Too few points for any HNSW: approximate search is a full scan here too.
    assert _ids(store.search_batch(name, queries, using="image", limit=10, exact=False)) == _ids(hits)
    expected_scores = np.sort(queries @ corpus.image.T, axis=1)[:, ::-1][:, :10]
    np.testing.assert_allclose([[h.score for h in row] for row in hits], expected_scores, atol=1e-5)


def test_search_batch_uses_the_named_vector(store: VectorStore, name: str, corpus: Corpus) -> None:
    _filled(store, name, corpus)
    queries = corpus.text[:3]
    hits = store.search_batch(name, queries, using="text", limit=7)
    assert _ids(hits) == _brute_force(corpus, queries, 7, using="text")
    assert [row[0].id for row in hits] == corpus.ids[:3]


def test_search_batch_returns_payloads(store: VectorStore, name: str, corpus: Corpus) -> None:
    _filled(store, name, corpus)
    hits = store.search_batch(name, corpus.image[:2], using="image", limit=3)
    top = hits[0][0]
    assert top.id == corpus.ids[0]
    assert top.payload == corpus.payloads[0]
    bare = store.search_batch(name, corpus.image[:2], using="image", limit=3, with_payload=False)
    assert all(h.payload == {} for row in bare for h in row)


def test_search_batch_of_no_queries(store: VectorStore, name: str, corpus: Corpus) -> None:
    _filled(store, name, corpus)
    assert store.search_batch(name, np.empty((0, DIM), np.float32), using="image", limit=3) == []


def test_unknown_vector_name_raises(store: VectorStore, name: str, corpus: Corpus) -> None:
    _filled(store, name, corpus)
    with pytest.raises(StoreError):
        store.search_batch(name, corpus.image[:1], using="depth", limit=3)


def test_keyword_filter(store: VectorStore, name: str, corpus: Corpus) -> None:
    _filled(store, name, corpus)
    allowed = np.array([p["label"] == "dune" for p in corpus.payloads])
    queries = corpus.image[:4]
    hits = store.search_batch(
        name, queries, using="image", limit=12, filter=SearchFilter(match={"label": "dune"})
    )
    assert _ids(hits) == _brute_force(corpus, queries, 12, allowed=allowed)


def test_geo_box_filter(store: VectorStore, name: str, corpus: Corpus) -> None:
    _filled(store, name, corpus)
    box = GeoBox(field="loc", lon_min=-2.5, lat_min=-1.5, lon_max=2.5, lat_max=3.5)
    allowed = np.array(
        [
            box.lon_min < p["loc"]["lon"] < box.lon_max and box.lat_min < p["loc"]["lat"] < box.lat_max  # type: ignore[index]
            for p in corpus.payloads
        ]
    )
    assert allowed.sum() == 25
    hits = store.search_batch(
        name, corpus.image[:2], using="image", limit=50, filter=SearchFilter(geo_box=box)
    )
    assert _ids(hits) == _brute_force(corpus, corpus.image[:2], 50, allowed=allowed)


def test_geo_radius_filter(store: VectorStore, name: str, corpus: Corpus) -> None:
    _filled(store, name, corpus)
    # 200 km around (0, 0): the 3 x 3 block of whole degrees (at most 157 km); the next is 222 km.
    circle = GeoRadius(field="loc", lon=0.0, lat=0.0, radius_m=200_000.0)
    allowed = np.array(
        [_haversine_m(0.0, 0.0, p["loc"]["lon"], p["loc"]["lat"]) < circle.radius_m for p in corpus.payloads]  # type: ignore[index]
    )
    assert allowed.sum() == 9
    both = SearchFilter(match={"label": "crater"}, geo_radius=circle)
    hits = store.search_batch(
        name, corpus.image[:2], using="image", limit=50, filter=SearchFilter(geo_radius=circle)
    )
    assert _ids(hits) == _brute_force(corpus, corpus.image[:2], 50, allowed=allowed)
    craters = allowed & np.array([p["label"] == "crater" for p in corpus.payloads])
    hits = store.search_batch(name, corpus.image[:2], using="image", limit=50, filter=both)
    assert _ids(hits) == _brute_force(corpus, corpus.image[:2], 50, allowed=craters)


def test_scroll_yields_every_point_once(store: VectorStore, name: str, corpus: Corpus) -> None:
    _filled(store, name, corpus)
    seen = [p.id for p in store.scroll(name, batch_size=7)]
    assert len(seen) == N_POINTS
    assert set(seen) == set(corpus.ids)
    first = next(iter(store.scroll(name, with_vectors=True, batch_size=5)))
    assert set(first.vectors) == {"image", "text"}


def test_retrieve_with_vectors(store: VectorStore, name: str, corpus: Corpus) -> None:
    _filled(store, name, corpus)
    missing = point_id("no such item")
    wanted = [corpus.ids[5], missing, corpus.ids[2]]
    got = store.retrieve(name, wanted, with_vectors=True)
    assert [p.id for p in got] == [corpus.ids[5], corpus.ids[2]]  # request order, missing skipped
    assert got[0].payload == corpus.payloads[5]
    np.testing.assert_allclose(got[0].vectors["image"], corpus.image[5], atol=1e-6)
    np.testing.assert_allclose(got[1].vectors["text"], corpus.text[2], atol=1e-6)
    assert store.retrieve(name, corpus.ids[:1])[0].vectors == {}


def test_snapshot_round_trip(store: VectorStore, name: str, corpus: Corpus, tmp_path: Path) -> None:
    """Export, delete, import: the same points and the same search results (issue 18, item 7c).
    qdrant-client's local mode has no snapshots; the server runs this only with QDRANT_URL."""
    if isinstance(store, ServerStore) and store._url is None:
        pytest.skip("qdrant-client's local mode has no snapshots")
    _filled(store, name, corpus)
    queries = corpus.image[:5]
    before = store.search_batch(name, queries, using="image", limit=20)
    payloads = {p.id: p.payload for p in store.scroll(name)}
    written = store.export_snapshot(name, tmp_path / f"{name}.snapshot")
    assert written.points == len(payloads) and written.path.stat().st_size > 0
    with pytest.raises(CollectionExists):
        store.import_snapshot(written.path, name)
    assert store.delete_collection(name)
    info = store.import_snapshot(written.path, name)
    assert info.points == len(payloads)
    assert {p.id: p.payload for p in store.scroll(name)} == payloads
    after = store.search_batch(name, queries, using="image", limit=20)
    assert _ids(after) == _ids(before)
    junk = tmp_path / "junk.snapshot"
    junk.write_bytes(b"not a snapshot")
    with pytest.raises(SnapshotInvalid):
        store.import_snapshot(junk, f"{name}_junk")
    assert f"{name}_junk" not in {i.name for i in store.list_collections()}

"""What only the embedded engine must do: persist, belong to one process, serve several threads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import qdrant_edge as qe

import marsbench.store
from marsbench.store import (
    CollectionMismatch,
    CollectionSpec,
    EmbeddedStore,
    PayloadIndex,
    Point,
    SearchFilter,
    StoreLocked,
    point_id,
)

DIM = 8
SPEC = CollectionSpec(
    name="landform__m__full", vectors={"image": DIM}, payload_indexes={"label": PayloadIndex.KEYWORD}
)

# Opens the store in a fresh interpreter and reports what happened.
_OTHER_PROCESS = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from marsbench.store import EmbeddedStore, StoreLocked
    store = EmbeddedStore(Path(sys.argv[1]))
    try:
        print("COUNT", store.count(sys.argv[2]))
    except StoreLocked as exc:
        print("LOCKED", exc)
    finally:
        store.close()
    """
)


def _points(n: int, start: int = 0, seed: int = 0) -> list[Point]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        Point(
            point_id(f"item-{start + i}"), {"image": v}, {"label": "even" if (start + i) % 2 == 0 else "odd"}
        )
        for i, v in enumerate(vectors)
    ]


def _in_other_process(root: Path, name: str) -> str:
    # The child imports the very marsbench under test, wherever it is installed from.
    source = str(Path(marsbench.store.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", _OTHER_PROCESS, str(root), name],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    points = _points(50)
    query = np.stack([points[3].vectors["image"]])
    with EmbeddedStore(tmp_path) as store:
        store.ensure_collection(SPEC)
        store.upsert(SPEC.name, points)
        before = store.search_batch(SPEC.name, query, using="image", limit=5)
    with EmbeddedStore(tmp_path) as store:
        assert store.ensure_collection(SPEC) is False
        assert [(i.name, i.vectors, i.points) for i in store.list_collections()] == [
            (SPEC.name, {"image": DIM}, 50)
        ]
        assert store.search_batch(SPEC.name, query, using="image", limit=5) == before
        only_even = store.search_batch(
            SPEC.name, query, using="image", limit=50, filter=SearchFilter(match={"label": "even"})
        )
        assert len(only_even[0]) == 25


def test_layout_is_one_directory_per_collection(tmp_path: Path) -> None:
    with EmbeddedStore(tmp_path) as store:
        store.ensure_collection(SPEC)
        collection = tmp_path / "collections" / SPEC.name
        assert (collection / "spec.json").is_file()
        assert (collection / "shard").is_dir()
        store.delete_collection(SPEC.name)
        assert not collection.exists()


def test_ensure_collection_adds_payload_indexes(tmp_path: Path) -> None:
    with EmbeddedStore(tmp_path) as store:
        store.ensure_collection(SPEC)
        wider = CollectionSpec(SPEC.name, SPEC.vectors, {**SPEC.payload_indexes, "loc": PayloadIndex.GEO})
        assert store.ensure_collection(wider) is False
        with pytest.raises(CollectionMismatch):
            store.ensure_collection(CollectionSpec(SPEC.name, SPEC.vectors, {"label": PayloadIndex.INTEGER}))
    with EmbeddedStore(tmp_path) as store:
        store.ensure_collection(SPEC)  # a narrower spec keeps the wider collection
        spec_file = (tmp_path / "collections" / SPEC.name / "spec.json").read_text()
        assert '"loc": "geo"' in spec_file


def test_another_process_gets_a_clear_error(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    store.ensure_collection(SPEC)
    store.upsert(SPEC.name, _points(10))
    try:
        answer = _in_other_process(tmp_path, SPEC.name)
        assert answer.startswith("LOCKED")
        assert "marsbench serve" in answer
        assert "QDRANT_URL" in answer
    finally:
        store.close()
    assert _in_other_process(tmp_path, SPEC.name) == "COUNT 10"  # closing releases the shard


def test_a_second_store_in_this_process_is_refused_and_delete_or_snapshot_keep_the_lock(
    tmp_path: Path,
) -> None:
    with EmbeddedStore(tmp_path) as store:
        store.ensure_collection(SPEC)
        store.upsert(SPEC.name, _points(10))
        with pytest.raises(StoreLocked), EmbeddedStore(tmp_path) as second:
            second.count(SPEC.name)
        store.export_snapshot(SPEC.name, tmp_path / "snap.tar.gz")  # the shard is closed and reopened
        assert _in_other_process(tmp_path, SPEC.name).startswith("LOCKED")
        assert store.delete_collection(SPEC.name) is True
        assert store.ensure_collection(SPEC) is True  # the name (and its lock) is free again
        assert store.count(SPEC.name) == 0


def test_new_shards_have_no_wal_and_older_ones_with_a_wal_still_open(tmp_path: Path) -> None:
    """`flush` is the durability point, so new shards are created without the engine's WAL; a
    collection created before (the engine's default config, a WAL) opens and takes writes as ever."""
    with EmbeddedStore(tmp_path) as store:
        store.ensure_collection(SPEC)
        store.upsert(SPEC.name, _points(10))
        store.flush(SPEC.name)
    shard = tmp_path / "collections" / SPEC.name / "shard"
    assert (shard / "segments").is_dir() and not (shard / "wal").exists()
    older = CollectionSpec("older", {"image": DIM}, {"label": PayloadIndex.KEYWORD})
    with EmbeddedStore(tmp_path) as store:
        store.ensure_collection(older)
    older_shard = tmp_path / "collections" / older.name / "shard"
    shutil.rmtree(older_shard)
    config = qe.EdgeConfig(vectors={"image": qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Dot)})
    qe.EdgeShard.create(str(older_shard), config).close()  # as the store created shards before
    assert (older_shard / "wal").is_dir()
    with EmbeddedStore(tmp_path) as store:
        store.upsert(older.name, _points(12))
        assert store.count(older.name) == 12
        assert store.count(SPEC.name) == 10
        hits = store.search_batch(older.name, _points(1)[0].vectors["image"][None, :], using="image", limit=1)
        assert hits[0][0].id == point_id("item-0")
    with EmbeddedStore(tmp_path) as store:
        assert store.count(older.name) == 12


def test_upserts_in_one_thread_while_another_searches(tmp_path: Path) -> None:
    batches = [_points(32, start=32 * b, seed=b) for b in range(12)]
    errors: list[BaseException] = []
    writing = threading.Event()
    with EmbeddedStore(tmp_path) as store:
        store.ensure_collection(SPEC)
        store.upsert(SPEC.name, batches[0])

        def write() -> None:
            try:
                for batch in batches[1:]:
                    store.upsert(SPEC.name, batch)
            except BaseException as exc:  # surfaced by the main thread
                errors.append(exc)
            finally:
                writing.set()

        rounds = 0

        def search() -> None:
            nonlocal rounds
            query = np.stack([p.vectors["image"] for p in batches[0][:4]])
            try:
                while not writing.is_set() or rounds < 3:
                    hits = store.search_batch(SPEC.name, query, using="image", limit=10)
                    # The first batch is there from the start, so each query finds itself first.
                    assert [row[0].id for row in hits] == [p.id for p in batches[0][:4]]
                    store.count(SPEC.name)
                    rounds += 1
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=write), threading.Thread(target=search)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert store.count(SPEC.name) == 32 * len(batches)


@pytest.mark.parametrize(
    "box",
    [
        (-180, -90, 180, 90),
        (-90, -90, 90, 90),
        (-170, -85, 180, 85),
        (-180, -60, 180, 60),
        (-20, -20, 20, 20),
    ],
)
def test_geo_boxes_reaching_a_pole_or_the_antimeridian_match_every_point_inside(
    tmp_path: Path, box: tuple[float, float, float, float]
) -> None:
    # The engine's geo index lost points for edges exactly on a pole or on longitude 180: the whole
    # planet matched 0 of 400 points, (-90, -90, 90, 90) 42 of 190 (search page box searches).
    from marsbench.store.base import GeoBox
    from marsbench.tasks.geo import GEO, LAT_KEY, LOCATION_FIELD, LON_KEY, NAME_FIELD

    rng = np.random.default_rng(0)
    lonlat = np.c_[rng.uniform(-180, 180, 400), rng.uniform(-80, 80, 400)]
    with EmbeddedStore(tmp_path / "q") as store:
        store.ensure_collection(GEO.collection_spec("g", 4))
        vectors = rng.normal(size=(400, 4)).astype(np.float32)
        store.upsert(
            "g",
            [
                Point(
                    id=point_id(str(i)),
                    vectors={"image": v / np.linalg.norm(v)},
                    payload={NAME_FIELD: str(i), LOCATION_FIELD: {LON_KEY: float(lon), LAT_KEY: float(lat)}},
                )
                for i, ((lon, lat), v) in enumerate(zip(lonlat, vectors, strict=True))
            ],
        )
        found = store.search_batch(
            "g",
            vectors[:1],
            using="image",
            limit=1000,
            filter=SearchFilter(geo_box=GeoBox(LOCATION_FIELD, *box)),
        )[0]
    lon_min, lat_min, lon_max, lat_max = box
    inside = (lonlat[:, 0] >= lon_min) & (lonlat[:, 0] <= lon_max)
    inside &= (lonlat[:, 1] >= lat_min) & (lonlat[:, 1] <= lat_max)
    assert sorted(int(h.payload["name"]) for h in found) == np.flatnonzero(inside).tolist()

"""The embedded store's sidecar (flat copy of ids, vectors, geo positions for bulk reads), the
durability point `flush`, and the point conversion without Python lists."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from marsbench.store import CollectionSpec, EmbeddedStore, PayloadIndex, Point, point_id
from marsbench.store._common import as_buffer
from marsbench.store.edge import _edge_point

SPEC = CollectionSpec("geo", {"image": 8}, {"location": PayloadIndex.GEO, "name": PayloadIndex.KEYWORD})


def _points(n: int, start: int = 0, *, seed: int = 0) -> list[Point]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, 8)).astype(np.float32)
    return [
        Point(
            id=point_id(f"t{i}"),
            vectors={"image": vectors[i - start]},
            payload={"name": f"t{i}", "location": {"lon": i * 0.2 - 100, "lat": i * 0.1 - 50}},
        )
        for i in range(start, start + n)
    ]


def _by_id(points: list[Point]) -> dict[str, Point]:
    return {p.id: p for p in points}


def test_numpy_rows_reach_the_engine_bit_for_bit(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((5, 8)).astype(np.float32)
    matrix[0, 0] = np.float32(1e-38)  # subnormal-adjacent and odd values survive unchanged
    strided = np.asfortranarray(matrix)  # rows not contiguous: converted without change
    for row, original in zip(strided, matrix, strict=True):
        assert list(as_buffer(row)) == original.tolist()
    float64 = matrix.astype(np.float64)[1]
    assert list(as_buffer(float64)) == matrix[1].tolist()
    edge = _edge_point(Point(id=point_id("x"), vectors={"image": matrix[2]}, payload={}))
    assert np.array_equal(np.asarray(edge.vector["image"], dtype=np.float32), matrix[2])
    with EmbeddedStore(tmp_path / "q") as store:
        store.ensure_collection(SPEC)
        points = [Point(id=point_id(f"r{i}"), vectors={"image": matrix[i]}, payload={}) for i in range(5)]
        store.upsert(SPEC.name, points)
        got = store.retrieve(SPEC.name, [p.id for p in points], with_vectors=True)
        for point, stored in zip(points, got, strict=True):
            assert np.array_equal(stored.vectors["image"], point.vectors["image"])


def test_sealed_sidecar_round_trips_last_write_wins(tmp_path: Path) -> None:
    first, second = _points(30), _points(10, 20, seed=1)  # ids t20..t29 written twice
    with EmbeddedStore(tmp_path / "q") as store:
        store.ensure_collection(SPEC)
        store.upsert(SPEC.name, first[:15])
        store.flush(SPEC.name)
        store.upsert(SPEC.name, first[15:])
        store.upsert(SPEC.name, second)
        assert store.bulk_read(SPEC.name, using="image", geo_field="location") is None  # not sealed
        store.seal(SPEC.name)
        bulk = store.bulk_read(SPEC.name, using="image", geo_field="location")
        assert bulk is not None and bulk.count == 30 == store.count(SPEC.name)
        expected = _by_id(first) | _by_id(second)
        ids = bulk.id_strings()
        assert sorted(ids) == sorted(expected)
        for row, pid in enumerate(ids):
            assert np.array_equal(bulk.vectors[row], expected[pid].vectors["image"])
            location = expected[pid].payload["location"]
            assert tuple(bulk.lonlat[row]) == (location["lon"], location["lat"])  # type: ignore[index]
        rank = bulk.id_rank()
        assert [ids[i] for i in np.argsort(rank)] == sorted(ids)
        assert not bulk.vectors.flags.writeable
    with EmbeddedStore(tmp_path / "q") as reopened:  # sealed on disk: checked again, still readable
        again = reopened.bulk_read(SPEC.name, using="image", geo_field="location")
        assert again is not None and again.id_strings() == ids
        reopened.upsert(SPEC.name, _points(1, 100))  # a write unseals: no bulk read until sealed again
        assert reopened.bulk_read(SPEC.name, using="image", geo_field="location") is None
        reopened.seal(SPEC.name)
        assert reopened.bulk_read(SPEC.name, using="image", geo_field="location").count == 31  # type: ignore[union-attr]


@pytest.mark.parametrize("damage", ["flip", "truncate", "ids", "count"])
def test_bulk_read_refuses_a_sidecar_that_disagrees(tmp_path: Path, damage: str) -> None:
    root = tmp_path / "q"
    with EmbeddedStore(root) as store:
        store.ensure_collection(SPEC)
        store.upsert(SPEC.name, _points(40))
        store.seal(SPEC.name)
    folder = root / "collections" / SPEC.name
    vectors = folder / "sidecar" / "vec.image.f32"
    if damage == "flip":
        raw = bytearray(vectors.read_bytes())
        raw[100] ^= 0xFF
        vectors.write_bytes(bytes(raw))
    elif damage == "truncate":
        vectors.write_bytes(vectors.read_bytes()[:-32])
    elif damage == "ids":
        ids = folder / "sidecar" / "ids.bin"
        raw = bytearray(ids.read_bytes())
        raw[0] ^= 0x01
        ids.write_bytes(bytes(raw))
    else:  # the manifest's record of the sidecar says another count than the collection holds
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["sidecar"]["rows"] = 39
        (folder / "manifest.json").write_text(json.dumps(manifest))
    with EmbeddedStore(root) as store:
        assert store.count(SPEC.name) == 40  # the collection itself is intact
        assert store.bulk_read(SPEC.name, using="image", geo_field="location") is None
        assert store.bulk_read(SPEC.name, using="text") is None


_CRASH = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {tests!r})
    from test_store_sidecar import SPEC, _points
    from marsbench.store import EmbeddedStore
    store = EmbeddedStore({root!r})
    store.ensure_collection(SPEC)
    store.upsert(SPEC.name, _points(20))
    store.flush(SPEC.name)
    store.upsert(SPEC.name, _points(20, 20))  # never flushed: the process dies
    os._exit(0)
    """
)


def test_after_a_crash_the_sidecar_is_cut_back_and_seal_makes_it_match_the_engine(tmp_path: Path) -> None:
    root = tmp_path / "q"
    script = _CRASH.format(tests=str(Path(__file__).parent), root=str(root))
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    with EmbeddedStore(root) as store:
        held = store.count(SPEC.name)
        assert held >= 20  # the flushed points survive (the engine may keep more from its WAL)
        store.upsert(SPEC.name, _points(5, 40))  # the resumed job goes on
        store.seal(SPEC.name)
        bulk = store.bulk_read(SPEC.name, using="image", geo_field="location")
        assert bulk is not None and bulk.count == store.count(SPEC.name) == held + 5
        engine = {p.id: p for p in store.scroll(SPEC.name, with_vectors=True)}
        assert sorted(bulk.id_strings()) == sorted(engine)
        for row, pid in enumerate(bulk.id_strings()):
            assert np.array_equal(bulk.vectors[row], engine[pid].vectors["image"])

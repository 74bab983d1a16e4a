"""Damage done to an embedded collection's files is detected when it is opened (issue 17, item 3).

qdrant-edge 0.9.0 checks nothing itself (measured): a truncated id tracker loads with fewer points,
random bytes over a vector chunk change the rankings, removed segments load as an empty shard. A
sealed collection (`seal`, called when its indexing job completes) is compared with its manifest on
open and refused with `CollectionDamaged`, naming it and the fix.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from marsbench.store import CollectionDamaged, CollectionSpec, EmbeddedStore, Point, point_id

DIM = 8
NAME = "landform__m__full"
SPEC = CollectionSpec(name=NAME, vectors={"image": DIM})
POINTS = 800


def _points(n: int, start: int = 0) -> list[Point]:
    rng = np.random.default_rng(start)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [Point(point_id(f"item-{start + i}"), {"image": v}, {"key": f"item-{start + i}"}) for i, v in
            enumerate(vectors)]  # fmt: skip


def _query() -> np.ndarray:
    return np.full((1, DIM), 1 / np.sqrt(DIM), dtype=np.float32)


def _segment(root: Path) -> Path:
    return next((root / "collections" / NAME / "shard" / "segments").iterdir())


@pytest.fixture
def sealed(tmp_path: Path) -> tuple[Path, list[str]]:
    """A closed store holding one sealed collection of 800 points (written in 4 batches, as a job
    does), and its top 10 for a fixed query."""
    root = tmp_path / "qdrant"
    with EmbeddedStore(root) as store:
        store.ensure_collection(SPEC)
        for start in range(0, POINTS, 200):
            store.upsert(NAME, _points(200, start))
        store.seal(NAME)
        top = [hit.id for hit in store.search_batch(NAME, _query(), using="image", limit=10)[0]]
    return root, top


def _truncate_id_tracker(root: Path) -> None:
    path = _segment(root) / "mutable_id_tracker.mappings"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 123])  # the engine loads this as 416-605 points


def _overwrite_vector_chunk(root: Path) -> None:
    path = _segment(root) / "vector_storage-image" / "vectors" / "chunk_0.mmap"
    with path.open("r+b") as handle:
        handle.write(np.random.default_rng(7).bytes(POINTS * DIM * 4))  # same size, other bytes


def _remove_segments(root: Path) -> None:
    shutil.rmtree(root / "collections" / NAME / "shard" / "segments")


def _remove_one_segment(root: Path) -> None:
    shutil.rmtree(_segment(root))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncate_id_tracker, "mutable_id_tracker.mappings is"),
        (_overwrite_vector_chunk, "chunk_0.mmap does not hold the bytes that were written"),
        (_remove_segments, "files are missing"),
        (_remove_one_segment, "files are missing"),
    ],
    ids=["truncated-id-tracker", "random-bytes-over-vectors", "segments-removed", "one-segment-removed"],
)
def test_damage_to_a_sealed_collection_is_refused_on_open(
    sealed: tuple[Path, list[str]], damage: Callable[[Path], None], reason: str
) -> None:
    root, _ = sealed
    damage(root)
    with EmbeddedStore(root) as store:
        for read in (
            lambda: store.count(NAME),
            lambda: store.search_batch(NAME, _query(), using="image", limit=10),
            lambda: store.collection_info(NAME),
        ):
            with pytest.raises(CollectionDamaged) as refused:
                read()
            message = str(refused.value)
            assert NAME in message and reason in message
            assert "index it again" in message and "POST /v1/jobs" in message


def test_a_sealed_collection_reopens_unchanged(sealed: tuple[Path, list[str]]) -> None:
    """No false alarm: opening, searching and closing (which rewrite some engine files) twice over."""
    root, top = sealed
    for _ in range(2):
        with EmbeddedStore(root) as store:
            assert store.count(NAME) == POINTS
            assert [h.id for h in store.search_batch(NAME, _query(), using="image", limit=10)[0]] == top


def test_a_write_unseals_and_a_new_seal_covers_it(sealed: tuple[Path, list[str]]) -> None:
    root, _ = sealed
    manifest = root / "collections" / NAME / "manifest.json"
    with EmbeddedStore(root) as store:
        store.upsert(NAME, _points(10, POINTS))
        assert not manifest.exists()  # the files change from here on: nothing to check them against
    with EmbeddedStore(root) as store:
        assert store.count(NAME) == POINTS + 10  # unsealed: opens without a check
        store.seal(NAME)
    _remove_one_segment(root)
    with EmbeddedStore(root) as store, pytest.raises(CollectionDamaged):
        store.count(NAME)


def test_a_damaged_collection_is_listed_as_such_and_can_be_deleted(sealed: tuple[Path, list[str]]) -> None:
    root, _ = sealed
    _truncate_id_tracker(root)
    with EmbeddedStore(root) as store:
        [info] = store.list_collections()
        assert info.name == NAME and info.points == 0 and info.damaged and "mappings" in info.damaged
        assert store.delete_collection(NAME)
        assert store.ensure_collection(SPEC)  # a clean start: re-indexing rebuilds it
        assert store.count(NAME) == 0


def test_an_unreadable_manifest_counts_as_damage(sealed: tuple[Path, list[str]]) -> None:
    root, _ = sealed
    (root / "collections" / NAME / "manifest.json").write_bytes(os.urandom(64))
    with EmbeddedStore(root) as store, pytest.raises(CollectionDamaged, match="manifest"):
        store.count(NAME)

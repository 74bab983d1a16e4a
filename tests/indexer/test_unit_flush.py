"""A unit is recorded complete only after the store's flush made its points durable, and a crash
between batches loses only the points of units not yet recorded, which the resume embeds again."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import qdrant_edge as qe

from marsbench.datasets.geo import DEFAULT_VARIANT
from marsbench.datasets.records import SkipLog
from marsbench.indexer.core.jobs import JobManager, _open_source
from marsbench.schemas.jobs import JobCreate, JobState, TaskName
from marsbench.store import EmbeddedStore, Point, point_id
from marsbench.tasks import INDEXABLE
from tests.conftest import png_bytes
from tests.fakes import FakeEncoder
from tests.indexer.test_bad_data import tar_bytes, tile

SHARDS, PER_SHARD = 4, 4
TOTAL = SHARDS * PER_SHARD


class Killed(Exception):
    """The process died here (not transient: the job does not retry)."""


class DurabilityStore:
    """The embedded store, keeping which points only a flush made durable; after `kill` every call
    fails, as in a dead process, and `lose_unflushed` then drops what a real kill would lose."""

    def __init__(self, inner: EmbeddedStore, jobs_dir: Path, *, kill_at_upsert: int | None = None) -> None:
        self._inner = inner
        self._jobs_dir = jobs_dir
        self._kill_at = kill_at_upsert
        self.upserts = 0
        self.flushes = 0
        self.dead = False
        self.unflushed: dict[str, list[str]] = {}
        self.durable: set[str] = set()
        self.violations: list[str] = []
        self.unit_ids: dict[str, set[str]] = {}

    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        self._check_recorded_units()
        self.upserts += 1
        if self.dead or self.upserts == self._kill_at:
            self.dead = True
            raise Killed("killed between batches")
        self._inner.upsert(collection, points)
        self.unflushed.setdefault(collection, []).extend(p.id for p in points)

    def flush(self, collection: str) -> None:
        if self.dead:
            raise Killed("the process is gone")
        self._check_recorded_units()
        self._inner.flush(collection)
        self.durable.update(self.unflushed.pop(collection, []))
        self.flushes += 1

    def lose_unflushed(self) -> int:
        lost = 0
        for collection, ids in self.unflushed.items():
            shard = self._inner._open[collection].shard
            shard.update(qe.UpdateOperation.delete_points(list(ids)))
            lost += len(set(ids))
        self.unflushed.clear()
        return lost

    def _check_recorded_units(self) -> None:
        """Every unit the job files record has all its points durable."""
        for path in self._jobs_dir.glob("*.json"):
            for unit in json.loads(path.read_text()).get("completed_units", []):
                missing = self.unit_ids[unit] - self.durable
                if missing:
                    self.violations.append(f"{unit} recorded with {len(missing)} points not flushed")

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


@pytest.fixture
def geo_shards(tmp_path: Path) -> Path:
    root = tmp_path / "geo"
    source = root / "tiles" / DEFAULT_VARIANT / "thumb" / "src"
    source.mkdir(parents=True)
    for shard in range(SHARDS):
        tiles = range(shard * 10, shard * 10 + PER_SHARD)
        (source / f"{shard:06d}.tar").write_bytes(tar_bytes([(tile(i), png_bytes(i)) for i in tiles]))
    return root


def unit_ids(dataset: Path) -> dict[str, set[str]]:
    source = _open_source(INDEXABLE["geolocalization"], dataset, {})
    ids: dict[str, set[str]] = {}
    for record in source.iter_records(SkipLog()):
        ids.setdefault(str(record.unit), set()).add(point_id(record.key))
    return ids


def manager(store: object, tmp_path: Path, encoder: FakeEncoder, interval: float) -> JobManager:
    return JobManager(
        store,  # type: ignore[arg-type]
        encoder,
        tmp_path / "jobs",
        batch_size=2,
        in_flight=1,
        retries=0,
        unit_flush_interval_s=interval,
    )


def request(dataset: Path) -> JobCreate:
    return JobCreate(task=TaskName.GEOLOCALIZATION, model="fake", dataset_dir=str(dataset))


@pytest.mark.parametrize("interval", [0.0, 60.0])
def test_a_unit_is_recorded_only_after_a_flush_covers_its_points(
    store: EmbeddedStore, tmp_path: Path, geo_shards: Path, interval: float
) -> None:
    wrapped = DurabilityStore(store, tmp_path / "jobs")
    wrapped.unit_ids = unit_ids(geo_shards)
    jobs = manager(wrapped, tmp_path, FakeEncoder(), interval)
    job = jobs.wait(jobs.submit(request(geo_shards)).id, 30)
    assert job.state is JobState.SUCCEEDED, job.error
    wrapped._check_recorded_units()
    assert wrapped.violations == []
    assert sorted(job.completed_units) == sorted(wrapped.unit_ids)
    # Per unit: a flush per finished unit; with a long interval, only the first unit's and the end's.
    assert wrapped.flushes == (len(wrapped.unit_ids) if interval == 0 else 2)
    assert wrapped.upserts == 8  # 16 tiles in batches of 2, no flush among them


@pytest.mark.parametrize("kill_at", [3, 4, 6, 8])
def test_a_crash_between_batches_loses_only_unrecorded_units_and_resume_embeds_exactly_those(
    store: EmbeddedStore, tmp_path: Path, geo_shards: Path, kill_at: int
) -> None:
    ids = unit_ids(geo_shards)
    wrapped = DurabilityStore(store, tmp_path / "jobs", kill_at_upsert=kill_at)
    wrapped.unit_ids = ids
    jobs = manager(wrapped, tmp_path, FakeEncoder(), 0.0)
    crashed = jobs.wait(jobs.submit(request(geo_shards)).id, 30)
    assert crashed.state is JobState.FAILED and "killed" in (crashed.error or "")
    assert wrapped.violations == []
    lost = wrapped.lose_unflushed()  # what the kill took with it
    recorded = set(crashed.completed_units)
    assert len(recorded) == (kill_at - 1) // 2  # units of 2 batches: those finished before the kill
    for unit in recorded:  # a recorded unit kept every point
        assert {p.id for p in store.retrieve(crashed.collection, sorted(ids[unit]))} == ids[unit]
    present = store.count(crashed.collection)
    assert present == len(wrapped.durable) and lost == 2 * (kill_at - 1) - len(wrapped.durable)
    encoder = FakeEncoder()
    again = manager(store, tmp_path, encoder, 0.0)
    resumed = again.wait(again.resume(crashed.id).id, 30)
    assert resumed.state is JobState.SUCCEEDED, resumed.error
    assert store.count(crashed.collection) == TOTAL
    # Exactly the points the crash lost or never wrote are embedded again.
    assert encoder.images_embedded == TOTAL - present

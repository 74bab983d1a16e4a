"""Resumable units: a unit counts as finished only when read to its end and fully written."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from marsbench.datasets.records import ImageRecord, SkipLog
from marsbench.indexer.core.pipeline import IndexPipeline, PipelineTarget
from marsbench.indexer.core.units import UnitTracker
from marsbench.store import CollectionSpec, EmbeddedStore, point_id
from tests.conftest import png_bytes
from tests.fakes import FakeEncoder


def test_unit_waits_for_its_outstanding_records() -> None:
    finished: list[str] = []
    tracker = UnitTracker(finished.append)
    tracker.submitted(["a", "a", "b"])
    tracker.read_to_end("a")
    assert finished == []
    tracker.processed(["a"])
    assert finished == []
    tracker.processed(["a", "b"])
    assert finished == ["a"]  # b was never read to its end
    tracker.read_to_end("b")
    assert finished == ["a", "b"]


def test_empty_unit_finishes_when_read() -> None:
    finished: list[str] = []
    UnitTracker(finished.append).read_to_end("empty")
    assert finished == ["empty"]


def reader(units: dict[str, int], skip: set[str], done: Callable[[str], None]) -> Iterator[ImageRecord]:
    """Yields each unit's records, then reports the unit, like the geo reader."""
    for unit, n in units.items():
        if unit in skip:
            continue
        for i in range(n):
            yield ImageRecord(
                key=f"{unit}/{i}", image=png_bytes(i), payload={"name": f"{unit}/{i}"}, unit=unit
            )
        done(unit)


@pytest.mark.parametrize(("batch_size", "in_flight"), [(1, 1), (3, 2), (4, 4), (50, 2)])
def test_pipeline_reports_each_unit_once_after_its_records_are_stored(
    tmp_path: Path, batch_size: int, in_flight: int
) -> None:
    units = {"s0.tar": 5, "s1.tar": 0, "s2.tar": 7, "s3.tar": 2}
    with EmbeddedStore(tmp_path / "q") as store:
        store.ensure_collection(CollectionSpec(name="c", vectors={"image": 8}))
        keys_of = {
            unit: [r.key for r in reader({unit: n}, set(), lambda u: None)] for unit, n in units.items()
        }
        reports: list[tuple[str, int]] = []  # (unit, its records missing from the store then)

        def finished(unit: str) -> None:
            ids = [point_id(key) for key in keys_of[unit]]
            reports.append((unit, len(ids) - len(store.retrieve("c", ids))))

        pipeline = IndexPipeline(
            store, FakeEncoder(), PipelineTarget("c", "image", "m"), batch_size=batch_size,
            in_flight=in_flight, skips=SkipLog(), on_progress=lambda n: None, units=UnitTracker(finished),
        )  # fmt: skip
        pipeline.run(reader(units, set(), pipeline.unit_read))
        assert sorted(unit for unit, _ in reports) == sorted(units)  # each unit reported exactly once...
        assert {missing for _, missing in reports} == {0}  # ...and only after all its records were stored

from pathlib import Path

import numpy as np
import pytest

from marsbench.datasets.records import ImageRecord, SkipLog
from marsbench.indexer.core.pipeline import IndexPipeline, PipelineTarget, batched
from marsbench.store import CollectionSpec, EmbeddedStore, point_id
from tests.conftest import png_bytes
from tests.fakes import FakeEncoder, unit_vector


def records(n: int, bad: set[int] = frozenset()) -> list[ImageRecord]:
    return [
        ImageRecord(
            key=f"img{i}", image=b"garbage" if i in bad else png_bytes(i), payload={"name": f"img{i}"}
        )
        for i in range(n)
    ]


@pytest.fixture
def store(tmp_path: Path):
    with EmbeddedStore(tmp_path / "qdrant") as opened:
        opened.ensure_collection(CollectionSpec(name="c", vectors={"image": 8}))
        yield opened


def run(
    store: EmbeddedStore, encoder: FakeEncoder, items: list[ImageRecord], skips: SkipLog, **kw: int
) -> int:
    progress: list[int] = []
    options = {"batch_size": 4, "in_flight": 3, **kw}
    pipeline = IndexPipeline(
        store,
        encoder,
        PipelineTarget("c", "image", "fake"),
        skips=skips,
        on_progress=progress.append,
        **options,
    )
    pipeline.run(iter(items))
    return sum(progress)


def test_batched_yields_fixed_size_chunks() -> None:
    assert [len(b) for b in batched(records(10), 4)] == [4, 4, 2]


def test_every_record_is_written_once_with_its_vector_and_payload(store: EmbeddedStore) -> None:
    encoder = FakeEncoder()
    items = records(11)
    assert run(store, encoder, items, SkipLog()) == 11
    assert store.count("c") == 11
    stored = store.retrieve("c", [point_id("img3")], with_vectors=True)[0]
    assert stored.payload == {"name": "img3"}
    np.testing.assert_allclose(stored.vectors["image"], unit_vector(png_bytes(3)), atol=1e-6)


def test_rerun_embeds_nothing_already_stored(store: EmbeddedStore) -> None:
    run(store, FakeEncoder(), records(6), SkipLog())
    encoder = FakeEncoder()
    assert run(store, encoder, records(9), SkipLog()) == 3  # only the 3 new ones are written
    assert encoder.images_embedded == 3
    assert store.count("c") == 9


def test_undecodable_images_are_skipped_reported_and_the_rest_written(store: EmbeddedStore) -> None:
    skips = SkipLog()
    done = run(store, FakeEncoder(), records(8, bad={2, 5}), skips)
    assert done == 6 and store.count("c") == 6
    assert skips.count == 2
    assert sorted(item.key for item in skips.items) == ["img2", "img5"]
    assert all("cannot decode" in item.reason for item in skips.items)


def test_encoder_failure_stops_the_pipeline_and_keeps_what_was_written(store: EmbeddedStore) -> None:
    class Failing(FakeEncoder):
        def embed_images(self, model, images, names=None):  # type: ignore[no-untyped-def]
            if any(name == "img6" for name in names or []):
                raise RuntimeError("encoder went away")
            return super().embed_images(model, images, names)

    with pytest.raises(RuntimeError, match="went away"):
        run(store, Failing(), records(12), SkipLog(), in_flight=1)
    assert store.count("c") == 4  # the first batch landed; nothing after the failure

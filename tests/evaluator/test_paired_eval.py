"""Paired evaluation through Qdrant against the metric functions on the same vectors."""

from pathlib import Path

import numpy as np
import pytest

from marsbench.evaluator.core.tasks.paired import evaluate_paired, load_pairs
from marsbench.evaluator.metrics.paired import paired_metrics
from marsbench.store import EmbeddedStore, Point, point_id
from marsbench.tasks.paired import PAIRED


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def filled(tmp_path: Path):
    rng = np.random.default_rng(3)
    images = unit_rows(rng.normal(size=(40, 16)))
    texts = unit_rows(images + rng.normal(scale=0.8, size=(40, 16)))
    keys = [f"{i:09d}" for i in range(40)]
    with EmbeddedStore(tmp_path / "q") as store:
        store.ensure_collection(PAIRED.collection_spec("p", 16))
        order = rng.permutation(40)  # written out of order: the evaluator must sort by key
        store.upsert(
            "p",
            [
                Point(
                    id=point_id(keys[i]),
                    vectors={"image": images[i], "text": texts[i]},
                    payload={"key": keys[i]},
                )
                for i in order
            ],
        )
        yield store, keys, images, texts


def test_pairs_load_in_key_order(filled) -> None:
    store, keys, images, texts = filled
    loaded_keys, loaded_images, loaded_texts = load_pairs(store, "p")
    assert loaded_keys == keys
    np.testing.assert_array_equal(loaded_images, images)
    np.testing.assert_array_equal(loaded_texts, texts)


def test_metrics_equal_the_direct_computation(filled) -> None:
    store, _, images, texts = filled
    outcome = evaluate_paired(store, collection="p", with_top_lists=False)
    assert outcome.metrics.as_dict() == paired_metrics(images, texts).as_dict()
    assert outcome.top_lists is None


def test_top_lists_agree_with_the_ranks(filled) -> None:
    store, keys, _, _ = filled
    outcome = evaluate_paired(store, collection="p", with_top_lists=True)
    assert outcome.top_lists is not None
    for direction, ranks in (("i2t", outcome.metrics.i2t_ranks), ("t2i", outcome.metrics.t2i_ranks)):
        lists = outcome.top_lists[direction]
        assert set(lists) == set(keys) and all(len(v) == 10 for v in lists.values())
        for key, rank in zip(keys, ranks, strict=True):
            # the partner shares the query's key: it appears at position rank-1 exactly when rank <= 10
            assert (key in lists[key]) == (rank <= 10)
            if rank <= 10:
                assert lists[key].index(key) == rank - 1


def test_exact_ties_are_bounded_and_counted(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    images = unit_rows(rng.normal(size=(12, 8)))
    texts = unit_rows(images + rng.normal(scale=0.5, size=(12, 8)))
    texts[3] = texts[4] = texts[5]  # duplicate captions embed to identical vectors
    with EmbeddedStore(tmp_path / "q") as store:
        store.ensure_collection(PAIRED.collection_spec("p", 8))
        store.upsert(
            "p",
            [
                Point(
                    id=point_id(f"{i:03d}"),
                    vectors={"image": images[i], "text": texts[i]},
                    payload={"key": f"{i:03d}"},
                )
                for i in range(12)
            ],
        )
        outcome = evaluate_paired(store, collection="p", with_top_lists=False)
    best, worst = outcome.tie_bounds["ties_optimistic"], outcome.tie_bounds["ties_pessimistic"]
    assert outcome.tied_partners() > 0
    assert best.i2t.mrr >= outcome.metrics.i2t.mrr >= worst.i2t.mrr
    assert best.i2t.mrr > worst.i2t.mrr  # the tie matters for image -> text

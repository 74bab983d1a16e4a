"""Landform evaluation through the store, against metrics computed directly on numpy scores."""

from pathlib import Path

import numpy as np
import pytest

from marsbench.evaluator.core.errors import NotIndexed
from marsbench.evaluator.core.runs import RunService
from marsbench.evaluator.core.tasks.landform import build_class_queries, chance_metrics, evaluate_landform
from marsbench.evaluator.metrics.landform import landform_metrics
from marsbench.evaluator.metrics.ranking import rank_by_score
from marsbench.schemas.jobs import TaskName
from marsbench.schemas.runs import RunCreate
from marsbench.store import CollectionSpec, EmbeddedStore, Point, point_id
from marsbench.tasks.landform import SCORE_DECIMALS, class_prompts, ensemble_query
from tests.fakes import FakeEncoder, unit_vector

CLASSES = ["crater", "glacier-like_form", "yardang"]


def fill(store: EmbeddedStore, n_per_class: int = 6) -> tuple[list[str], list[str], np.ndarray]:
    """Images near their class's query direction plus noise, so rankings are informative."""
    encoder = FakeEncoder()
    queries = build_class_queries(encoder, "fake", CLASSES)
    rng = np.random.default_rng(0)
    names, labels, vectors = [], [], []
    for c, label in enumerate(CLASSES):
        for i in range(n_per_class):
            v = queries[c] + rng.normal(0, 0.9, size=queries.shape[1])
            names.append(f"{label}/{i}.png")
            labels.append(label)
            vectors.append((v / np.linalg.norm(v)).astype(np.float32))
    store.ensure_collection(CollectionSpec(name="lf", vectors={"image": queries.shape[1]}))
    store.upsert(
        "lf",
        [
            Point(id=point_id(n), vectors={"image": v}, payload={"name": n, "label": lab})
            for n, lab, v in zip(names, labels, vectors, strict=True)
        ],
    )
    return names, labels, np.stack(vectors)


def test_class_query_is_the_normalised_mean_of_the_template_embeddings() -> None:
    encoder = FakeEncoder()
    query = build_class_queries(encoder, "fake", ["glacier-like_form"])[0]
    prompts = class_prompts("glacier-like_form")
    assert prompts[0] == "a photo of glacier like form, a type of martian terrain"
    expected = np.mean([unit_vector(p) for p in prompts], axis=0)
    np.testing.assert_allclose(query, expected / np.linalg.norm(expected), atol=1e-6)
    np.testing.assert_allclose(
        ensemble_query(np.stack([unit_vector(p) * 3 for p in prompts])), query, atol=1e-6
    )


def test_evaluation_through_qdrant_equals_direct_numpy_evaluation(store: EmbeddedStore) -> None:
    names, labels, vectors = fill(store)
    outcome = evaluate_landform(store, FakeEncoder(), collection="lf", model="fake", max_k=None)
    queries = build_class_queries(FakeEncoder(), "fake", CLASSES)
    relevant = {c: {n for n, lab in zip(names, labels, strict=True) if lab == c} for c in CLASSES}
    rankings = {
        c: rank_by_score(names, vectors @ queries[i], decimals=SCORE_DECIMALS) for i, c in enumerate(CLASSES)
    }
    expected = landform_metrics(rankings, relevant)
    assert outcome.classes == CLASSES and outcome.n_images == 18
    for key, value in expected.as_dict().items():
        assert outcome.metrics.as_dict()[key] == pytest.approx(value, abs=1e-12)
    assert outcome.metrics.as_dict()["mAP"] > outcome.chance["mAP"]


def test_chance_baseline_is_near_the_relevant_fraction() -> None:
    names = [f"{i}" for i in range(300)]
    relevant = {"a": set(names[:30]), "b": set(names[30:90])}
    chance = chance_metrics(names, relevant, max_k=None, shuffles=50)
    # E[AP] of a random ranking is close to |R|/N (0.1 and 0.2 here).
    assert chance["mAP"] == pytest.approx(0.15, abs=0.02)
    assert chance["r_precision"] == pytest.approx(0.15, abs=0.02)


def test_run_record_is_written_and_readable(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path
) -> None:
    runs = RunService(store, FakeEncoder(), tmp_path / "runs")
    request = RunCreate(task=TaskName.LANDFORM, model="fake", dataset_dir=str(landform_folders))
    with pytest.raises(NotIndexed, match="index it first"):
        runs.create(request)
    name = runs.collection_for(request)
    store.ensure_collection(CollectionSpec(name=name, vectors={"image": 8}))
    store.upsert(
        name,
        [
            Point(
                id=point_id(f"{c}/{i}"),
                vectors={"image": unit_vector(f"{c}{i}")},
                payload={"name": f"{c}/{i}", "label": c},
            )
            for c in ("a", "b")
            for i in range(3)
        ],
    )
    record = runs.create(request)
    assert record.variant == "parity" and set(record.metrics) == {"mAP", "r_precision", "ndcg@10", "hit@10"}
    assert set(record.per_class) == {"a", "b"} and record.counts == {"images": 6, "classes": 2}
    assert runs.get(record.id) == record
    assert [r.id for r in runs.list()] == [record.id]

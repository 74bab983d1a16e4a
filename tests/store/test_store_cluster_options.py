"""Collection layout on a Qdrant server or cluster: shards, replicas, write consistency.

Settings come from `QDRANT_SHARD_NUMBER`, `QDRANT_REPLICATION_FACTOR` and
`QDRANT_WRITE_CONSISTENCY_FACTOR` (defaults 1/1/1) and reach qdrant-client's `create_collection`.
No server runs here: a qdrant-client local-mode client stands in and records the calls. The
embedded engine ignores the options (one local shard per collection).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import ValidationError
from qdrant_client import QdrantClient

from marsbench.evaluator.settings import EvaluatorSettings
from marsbench.indexer.settings import IndexerSettings
from marsbench.settings import StoreSettings
from marsbench.store import CollectionSpec, EmbeddedStore, ServerStore, open_store

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

ENV = ("QDRANT_URL", "QDRANT_SHARD_NUMBER", "QDRANT_REPLICATION_FACTOR", "QDRANT_WRITE_CONSISTENCY_FACTOR")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"MARSBENCH_{name}", raising=False)


class RecordingClient(QdrantClient):
    """Local mode in memory, remembering what `create_collection` was asked."""

    created: ClassVar[list[dict[str, object]]] = []

    def __init__(self, **kwargs: object) -> None:
        super().__init__(location=":memory:")

    def create_collection(self, collection_name: str, **kwargs: object) -> bool:  # type: ignore[override]
        RecordingClient.created.append({"name": collection_name, **kwargs})
        return super().create_collection(collection_name, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    RecordingClient.created = []
    monkeypatch.setattr("marsbench.store.server.QdrantClient", RecordingClient)
    return RecordingClient.created


def test_defaults_are_one_shard_one_replica_one_write() -> None:
    settings = StoreSettings()
    assert settings.qdrant_shard_number == 1
    assert settings.qdrant_replication_factor == 1
    assert settings.qdrant_write_consistency_factor == 1


@pytest.mark.parametrize("prefix", ["", "MARSBENCH_"])
def test_read_from_the_environment(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    monkeypatch.setenv(f"{prefix}QDRANT_SHARD_NUMBER", "6")
    monkeypatch.setenv(f"{prefix}QDRANT_REPLICATION_FACTOR", "2")
    monkeypatch.setenv(f"{prefix}QDRANT_WRITE_CONSISTENCY_FACTOR", "2")
    for settings in (StoreSettings(), IndexerSettings(), EvaluatorSettings()):
        assert (
            settings.qdrant_shard_number,
            settings.qdrant_replication_factor,
            settings.qdrant_write_consistency_factor,
        ) == (6, 2, 2)


def test_write_consistency_cannot_exceed_replication(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QDRANT_REPLICATION_FACTOR", "2")
    monkeypatch.setenv("QDRANT_WRITE_CONSISTENCY_FACTOR", "3")
    with pytest.raises(ValidationError, match="cannot exceed"):
        StoreSettings()


@pytest.mark.parametrize("name", ["QDRANT_SHARD_NUMBER", "QDRANT_REPLICATION_FACTOR"])
def test_zero_is_refused(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "0")
    with pytest.raises(ValidationError):
        StoreSettings()


def test_settings_reach_create_collection(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, recording: list[dict[str, object]]
) -> None:
    monkeypatch.setenv("QDRANT_URL", "http://qdrant:6333")
    monkeypatch.setenv("QDRANT_SHARD_NUMBER", "6")
    monkeypatch.setenv("QDRANT_REPLICATION_FACTOR", "2")
    monkeypatch.setenv("QDRANT_WRITE_CONSISTENCY_FACTOR", "1")
    store = IndexerSettings(data_dir=tmp_path).open_store()
    try:
        assert isinstance(store, ServerStore)
        assert store.ensure_collection(CollectionSpec(name="mbtest_cluster", vectors={"image": 4}))
        # An existing collection keeps its layout: no second create.
        assert not store.ensure_collection(CollectionSpec(name="mbtest_cluster", vectors={"image": 4}))
    finally:
        store.close()
    assert len(recording) == 1
    call = recording[0]
    assert call["name"] == "mbtest_cluster"
    assert (call["shard_number"], call["replication_factor"], call["write_consistency_factor"]) == (6, 2, 1)


def test_default_settings_create_single_shard_collections(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, recording: list[dict[str, object]]
) -> None:
    monkeypatch.setenv("QDRANT_URL", "http://qdrant:6333")
    with StoreSettings(data_dir=tmp_path).open_store() as store:
        store.ensure_collection(CollectionSpec(name="mbtest_single", vectors={"text": 4}))
    call = recording[0]
    assert (call["shard_number"], call["replication_factor"], call["write_consistency_factor"]) == (1, 1, 1)


def test_embedded_engine_ignores_the_options(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="marsbench.store.factory"):
        store = StoreSettings(data_dir=tmp_path).open_store()  # defaults 1/1/1: nothing to say
        assert isinstance(store, EmbeddedStore)
        store.close()
        assert not caplog.records
        store = open_store(qdrant_url=None, data_dir=tmp_path, shard_number=3, replication_factor=2)
        assert isinstance(store, EmbeddedStore)
        store.close()
    assert "ignores replication_factor, shard_number" in caplog.text

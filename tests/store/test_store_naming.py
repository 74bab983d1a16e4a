"""Collection names and point ids, plus the backend factory."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from marsbench.store import EmbeddedStore, ServerStore, collection_name, open_store, point_id
from marsbench.store.naming import POINT_NAMESPACE

SAFE = re.compile(r"[a-z0-9_-]{1,63}")


def test_clean_parts_stay_readable() -> None:
    assert collection_name("landform", "ViT-B-32", "full") == "landform__vit-b-32__full"


def test_sanitised_names_get_a_hash_suffix() -> None:
    name = collection_name("landform", "openai/clip-vit-base-patch32", "full")
    assert re.fullmatch(r"landform__openai-clip-vit-base-patch32__full-[0-9a-f]{8}", name)
    # "/" and "-" sanitise alike; the suffix keeps them apart.
    assert name != collection_name("landform", "openai-clip-vit-base-patch32", "full")


def test_parts_cannot_bleed_into_each_other() -> None:
    assert collection_name("a__b", "c", "d") != collection_name("a", "b__c", "d")


@pytest.mark.parametrize(
    ("task", "model", "variant"),
    [
        ("landform", "x" * 200, "full"),
        ("Global Geo", "hf-hub:timm/ViT-SO400M-14-SigLIP", "crops 512px"),
        ("t", "///", "ü"),
    ],
)
def test_names_are_safe_and_stable(task: str, model: str, variant: str) -> None:
    name = collection_name(task, model, variant)
    assert SAFE.fullmatch(name), name
    assert name == collection_name(task, model, variant)


def test_empty_parts_are_rejected() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        collection_name("landform", " ", "full")


def test_point_id_is_a_deterministic_uuid5() -> None:
    pid = point_id("images/ESP_012345_1234.png")
    assert pid == point_id("images/ESP_012345_1234.png")
    assert pid != point_id("images/ESP_012345_1235.png")
    assert uuid.UUID(pid).version == 5
    assert pid == str(uuid.uuid5(POINT_NAMESPACE, "images/ESP_012345_1234.png"))


def test_open_store_without_url_is_embedded(tmp_path: Path) -> None:
    store = open_store(qdrant_url=None, data_dir=tmp_path)
    assert isinstance(store, EmbeddedStore)
    assert store.root == tmp_path / "qdrant"
    store.close()


def test_open_store_with_url_is_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, object]] = []

    class FakeClient:  # no server here: record how the client would have been built
        def __init__(self, **kwargs: object) -> None:
            made.append(kwargs)

        def close(self) -> None:
            made.append({"closed": True})

    monkeypatch.setattr("marsbench.store.server.QdrantClient", FakeClient)
    store = open_store(qdrant_url="http://qdrant:6333", data_dir=tmp_path, api_key="k", timeout=2.5)
    assert isinstance(store, ServerStore)
    store.close()
    assert made == [{"url": "http://qdrant:6333", "api_key": "k", "timeout": 3}, {"closed": True}]

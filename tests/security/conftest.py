"""Shared pieces of the security tests: a key, an encoder app over the tiny random model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from marsbench.encoder.app import create_app
from marsbench.encoder.core.engine import EncoderEngine
from marsbench.encoder.registry import ModelSpec, registered_specs
from marsbench.encoder.settings import EncoderSettings

KEY = "k3y-for-tests-0123456789abcdef"
TINY = "tiny-both"


def encoder_engine(tiny_clip_dir: Path, **settings: Any) -> EncoderEngine:
    specs = registered_specs()
    specs[TINY] = ModelSpec(name=TINY, family="open_clip", source=f"local-dir:{tiny_clip_dir}")
    return EncoderEngine(EncoderSettings(**{"preload": [TINY], "max_wait_ms": 1} | settings), specs=specs)


@pytest.fixture
def make_encoder(tiny_clip_dir: Path) -> Iterator[Any]:
    """`make_encoder(**settings)`: a started encoder app (lifespan run) serving `tiny-both`."""
    clients: list[TestClient] = []

    def make(**settings: Any) -> TestClient:
        client = TestClient(create_app(engine=encoder_engine(tiny_clip_dir, **settings)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def _no_ambient_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key or host in the caller's environment would change what these tests see."""
    for name in ("API_KEY", "REQUIRE_API_KEY", "HOST", "DATASET_ROOTS"):
        monkeypatch.delenv(f"MARSBENCH_{name}", raising=False)

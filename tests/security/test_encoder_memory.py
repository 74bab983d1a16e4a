"""Issue 17, item 7: concurrent loads keep to the loaded-model limit, a load that cannot succeed
evicts nothing, and random weights are served only when asked for by name."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

import marsbench.encoder.core.engine as engine_module
from marsbench.encoder.app import create_app
from marsbench.encoder.core.engine import EncoderEngine
from marsbench.encoder.registry import ModelSpec
from marsbench.encoder.settings import EncoderSettings
from tests.conftest import TINY_CFG, write_random_open_clip
from tests.security.conftest import TINY, encoder_engine

TEST_ARCH = "marsbench-test-tiny-arch"


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("adhoc")
    return [write_random_open_clip(root / f"m{i}", seed=i) for i in range(3)]


@pytest.fixture(scope="module")
def test_arch(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A built-in-style open_clip architecture as small as the tiny model (no weights anywhere)."""
    import open_clip

    folder = tmp_path_factory.mktemp("arch")
    (folder / f"{TEST_ARCH}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(folder / f"{TEST_ARCH}.json")
    return TEST_ARCH


@pytest.mark.anyio
async def test_concurrent_loads_keep_to_the_loaded_model_limit(
    model_dirs: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three ad hoc models asked for at once with room for one: before, each saw an empty encoder and
    all three loaded side by side (RSS doubled in the filed case)."""
    engine = EncoderEngine(EncoderSettings(device="cpu", max_loaded_models=1), specs={})
    loading = 0
    peak = 0
    real = engine_module.load_model

    def counted(spec: ModelSpec, options: Any) -> Any:
        nonlocal loading, peak
        loading += 1
        peak = max(peak, loading + len(engine.loaded_models()))
        time.sleep(0.2)  # long enough for the three requests to overlap
        try:
            return real(spec, options)
        finally:
            loading -= 1

    monkeypatch.setattr(engine_module, "load_model", counted)
    async with engine:
        refs = [f"open_clip:local-dir:{folder}" for folder in model_dirs]
        served = await asyncio.gather(*(engine.model(ref) for ref in refs))
        assert [s.model.dimension for s in served] == [16, 16, 16]
        assert peak == 1 and len(engine.loaded_models()) == 1


def test_a_load_that_cannot_succeed_evicts_nothing(
    tiny_clip_dir: Path, tmp_path: Path, test_arch: str
) -> None:
    """The preloaded model stayed unloaded (/readyz 503) after any failed load made room for it."""
    empty = tmp_path / "empty.pt"
    torch.save({"state_dict": {}}, empty)
    engine = encoder_engine(tiny_clip_dir, device="cpu", max_loaded_models=1)
    bad = [
        f"{TINY}@{empty}",
        f"{TINY}@{tmp_path}/missing.pt",
        f"{TINY}@/etc/passwd",
        "open_clip:No-Such-Arch",
        f"open_clip:{test_arch}",  # no weights
        f"open_clip:local-dir:{tmp_path}",  # no model files
    ]
    with TestClient(create_app(engine=engine)) as client:
        for ref in bad:
            answer = client.post("/v1/embeddings", json={"model": ref, "input": "x"})
            assert answer.status_code == 422, (ref, answer.text)
            assert engine.loaded_models() == [TINY], ref
            assert client.get("/readyz").status_code == 200


def test_random_weights_only_when_asked_for_and_then_on_the_card(test_arch: str) -> None:
    specs = {
        "random-on-purpose": ModelSpec(
            name="random-on-purpose", family="open_clip", source=test_arch, random_weights=True
        ),
        "forgot-weights": ModelSpec(name="forgot-weights", family="open_clip", source=test_arch),
    }
    engine = EncoderEngine(EncoderSettings(device="cpu", max_wait_ms=1), specs=specs)
    with TestClient(create_app(engine=engine)) as client:
        for ref in (f"open_clip:{test_arch}", "forgot-weights"):
            answer = client.post("/v1/embeddings", json={"model": ref, "input": "x"})
            assert answer.status_code == 422, answer.text
            message = answer.json()["error"]["message"]
            assert "random weights" in message and f"open_clip:{test_arch}:random" in message, message
        for ref in (f"open_clip:{test_arch}:random", "random-on-purpose"):
            assert client.post("/v1/embeddings", json={"model": ref, "input": "x"}).status_code == 200
            card = client.get(f"/v1/models/{ref}", params={"load": "true"}).json()
            assert card["random_weights"] is True and card["loaded"] is True
        listed = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
        assert listed["random-on-purpose"]["random_weights"] is True
        assert listed["forgot-weights"]["random_weights"] is False


@pytest.mark.anyio
async def test_a_real_model_card_says_its_weights_are_not_random() -> None:
    async with EncoderEngine(EncoderSettings(device="cpu")) as engine:
        assert (await engine.describe("marsbench-tiny")).random_weights is False

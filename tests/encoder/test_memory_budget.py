"""Several models in one encoder: lazy loading, and least-recently-used eviction under a memory budget."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from marsbench.encoder.core.engine import GIB, EncoderEngine
from marsbench.encoder.errors import ModelTooLarge
from marsbench.encoder.registry import ModelSpec
from marsbench.encoder.settings import EncoderSettings
from tests.conftest import write_random_open_clip

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def three_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelSpec]:
    root = tmp_path_factory.mktemp("budget")
    return {
        name: ModelSpec(
            name=name, family="open_clip", source=f"local-dir:{write_random_open_clip(root / name, seed)}"
        )
        for seed, name in enumerate(("a", "b", "c"))
    }


def loaded(engine: EncoderEngine) -> list[str]:
    return [m.id for m in engine.list_models() if m.loaded]


async def test_models_load_lazily_and_the_least_recently_used_goes_first(
    three_models: dict[str, ModelSpec],
) -> None:
    async with EncoderEngine(EncoderSettings(device="cpu"), specs=three_models) as engine:
        one = (await engine.model("a")).memory_bytes
        assert loaded(engine) == ["a"]
        # Room for two models by memory (the count limit is set high so that memory decides).
        engine.settings.max_loaded_models = 10
        engine.settings.cpu_memory_budget_gb = 2.5 * one / GIB
        await engine.model("b")
        await engine.model("a")  # a is now more recently used than b
        await engine.model("c")
        assert sorted(loaded(engine)) == ["a", "c"]
        assert engine.loaded_bytes() <= engine.memory_budget_bytes()
        vectors, _ = await engine.embed_texts("b", ["a crater"])  # b comes back on demand
        assert vectors.shape[0] == 1 and sorted(loaded(engine)) == ["b", "c"]


async def test_the_model_count_limit_also_evicts(three_models: dict[str, ModelSpec]) -> None:
    async with EncoderEngine(
        EncoderSettings(device="cpu", max_loaded_models=1), specs=three_models
    ) as engine:
        for name in ("a", "b", "c"):
            await engine.model(name)
            assert loaded(engine) == [name]


async def test_a_model_larger_than_the_budget_is_refused_clearly(three_models: dict[str, ModelSpec]) -> None:
    settings = EncoderSettings(device="cpu", cpu_memory_budget_gb=0.0001)
    async with EncoderEngine(settings, specs=three_models) as engine:
        with pytest.raises(ModelTooLarge, match="MARSBENCH_ENCODER_CPU_MEMORY_BUDGET_GB"):
            await engine.model("a")
        assert loaded(engine) == []


async def test_the_registry_estimate_refuses_before_loading(
    three_models: dict[str, ModelSpec], tmp_path: Path
) -> None:
    """A 30 GiB model on a 1 GiB budget is refused from its registry entry, without reading weights."""
    specs = {"huge": three_models["a"].model_copy(update={"name": "huge", "memory_gb": 30.0,
                                                          "source": f"local-dir:{tmp_path}"})}  # fmt: skip
    async with EncoderEngine(EncoderSettings(device="cpu", cpu_memory_budget_gb=1), specs=specs) as engine:
        with pytest.raises(ModelTooLarge, match=r"30\.00 GiB"):
            await engine.model("huge")


async def test_model_cards_report_memory_and_status(three_models: dict[str, ModelSpec]) -> None:
    async with EncoderEngine(EncoderSettings(device="cpu"), specs=three_models) as engine:
        card = await engine.describe("a", load=False)
        assert (card.loaded, card.status, card.memory_gb) == (False, "available", None)
        card = await engine.describe("a")
        assert card.loaded and card.status == "loaded" and card.memory_gb and card.memory_gb > 0


async def test_model_cards_say_where_and_how_a_loaded_model_runs(three_models: dict[str, ModelSpec]) -> None:
    """Device, precision and weights identity: what a run record needs to say what embedded its queries."""
    async with EncoderEngine(EncoderSettings(device="cpu"), specs=three_models) as engine:
        card = await engine.describe("a", load=False)
        assert (card.device, card.precision, card.weights, card.weights_sha256) == (None, None, None, None)
        card = await engine.describe("a")
        assert (card.device, card.precision) == ("cpu", "fp32")  # CPU runs fp32 whatever the setting
        assert card.weights and "open_clip_model.safetensors:" in card.weights
        # The content hash of each local weight file: the identity that holds on another machine.
        folder = Path(three_models["a"].source.removeprefix("local-dir:"))
        expected = hashlib.sha256((folder / "open_clip_model.safetensors").read_bytes()).hexdigest()
        assert card.weights_sha256 == {"open_clip_model.safetensors": expected}
        assert (await engine.describe("a", load=False)).device == "cpu"  # loaded: load=False knows too


def test_registry_estimates_follow_the_weights_dtype() -> None:
    from marsbench.encoder.adapters import expected_weight_gb
    from marsbench.encoder.registry import registered_specs

    specs = registered_specs()
    assert expected_weight_gb(specs["e5-v"], "cpu") == specs["e5-v"].memory_gb
    assert expected_weight_gb(specs["e5-v"], "cuda") == specs["e5-v"].memory_gb / 2  # fp16 weights
    assert expected_weight_gb(specs["dfn2b-clip-vit-l-14"], "cuda") == specs["dfn2b-clip-vit-l-14"].memory_gb

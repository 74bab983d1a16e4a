"""Model adapters, one module per model *family*; `load_model` picks one by the spec's family.

Adding a family means one module implementing `EmbeddingModel` and one line in `FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Callable

from marsbench.encoder.adapters.base import EmbeddingModel, RuntimeOptions
from marsbench.encoder.adapters.hub import check_local_folder
from marsbench.encoder.adapters.mllm import MLLM_FAMILIES, load_mllm, mllm_prompt_card
from marsbench.encoder.adapters.open_clip import OpenClipModel
from marsbench.encoder.adapters.transformers_towers import TOWER_FAMILIES, TransformersTowers
from marsbench.encoder.errors import InvalidModelRef
from marsbench.encoder.registry import ModelSpec

FAMILIES: dict[str, Callable[[ModelSpec, RuntimeOptions], EmbeddingModel]] = {
    "open_clip": OpenClipModel.load,
    **dict.fromkeys(TOWER_FAMILIES, TransformersTowers.load),
}


FAMILIES.update(dict.fromkeys(MLLM_FAMILIES, load_mllm))

# Families whose prompts can be described from the registry entry alone, before loading.
PromptCard = Callable[[ModelSpec], dict[str, str]]
PROMPT_CARDS: dict[str, PromptCard] = dict.fromkeys(MLLM_FAMILIES, mllm_prompt_card)


def prompt_card(spec: ModelSpec) -> dict[str, str]:
    describe = PROMPT_CARDS.get(spec.family)
    return describe(spec) if describe else {}


def expected_weight_gb(spec: ModelSpec, device_type: str) -> float | None:
    """The registry's estimate of the weights a model occupies once loaded on `device_type`:
    `memory_gb` is the fp32 size; MLLM embedders keep their weights in 16 bits on a GPU."""
    if spec.memory_gb is None:
        return None
    if device_type == "cuda" and spec.family in MLLM_FAMILIES and spec.precision != "fp32":
        return spec.memory_gb / 2
    return spec.memory_gb


# Cheap checks a family can run before loading (files present, architecture known, weights named).
CHECKS: dict[str, Callable[[ModelSpec, RuntimeOptions], None]] = {"open_clip": OpenClipModel.check}


def check_model(spec: ModelSpec, options: RuntimeOptions) -> None:
    """Raise what `load_model` would raise for reasons knowable without loading: the engine calls it
    before unloading anything to make room, so a load that cannot succeed evicts nothing."""
    _loader(spec)
    check_local_folder(spec)
    check = CHECKS.get(spec.family)
    if check is not None:
        check(spec, options)


def _loader(spec: ModelSpec) -> Callable[[ModelSpec, RuntimeOptions], EmbeddingModel]:
    try:
        loader = FAMILIES[spec.family]
    except KeyError:
        raise InvalidModelRef(
            f"model {spec.name!r} names adapter family {spec.family!r}; known: {', '.join(FAMILIES)}"
        ) from None
    if spec.status() == "needs checkpoint":
        raise InvalidModelRef(
            f"model {spec.name!r} is defined by a checkpoint file you supply: ask for "
            f"'{spec.name}@/path/to/checkpoint.pt', or set `checkpoint` under [models.{spec.name}] in a "
            "registry file (MARSBENCH_ENCODER_REGISTRY)"
        )
    return loader


def load_model(spec: ModelSpec, options: RuntimeOptions) -> EmbeddingModel:
    return _loader(spec)(spec, options)


__all__ = ["FAMILIES", "EmbeddingModel", "RuntimeOptions", "check_model", "load_model", "prompt_card"]

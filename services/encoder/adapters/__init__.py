"""Model adapters, one module per model *family*; `load_model` picks one by the spec's family.

Adding a family means one module implementing `EmbeddingModel` and one line in `FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Callable

from marsbench.encoder.adapters.base import EmbeddingModel, RuntimeOptions
from marsbench.encoder.adapters.open_clip import OpenClipModel
from marsbench.encoder.adapters.transformers_towers import TOWER_FAMILIES, TransformersTowers
from marsbench.encoder.core.errors import InvalidModelRef
from marsbench.encoder.core.registry import ModelSpec

FAMILIES: dict[str, Callable[[ModelSpec, RuntimeOptions], EmbeddingModel]] = {
    "open_clip": OpenClipModel.load,
    **dict.fromkeys(TOWER_FAMILIES, TransformersTowers.load),
}


def load_model(spec: ModelSpec, options: RuntimeOptions) -> EmbeddingModel:
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
    return loader(spec, options)


__all__ = ["FAMILIES", "EmbeddingModel", "RuntimeOptions", "load_model"]

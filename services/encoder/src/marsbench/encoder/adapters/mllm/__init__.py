"""MLLM embedders: one module per published procedure, on transformers' own model classes.

Loaded lazily by dotted path, so that serving a CLIP never imports a Qwen2-VL.
"""

from __future__ import annotations

import importlib
from typing import Any

from marsbench.encoder.adapters.base import RuntimeOptions
from marsbench.encoder.registry import ModelSpec

# family -> "module:Class" under this package
MLLM_FAMILIES: dict[str, str] = {
    "e5v": "e5v:E5VEmbedder",
    "gme": "qwen2_vl:GmeEmbedder",
    "vlm2vec": "qwen2_vl:Vlm2VecEmbedder",
    "ops_mm": "qwen2_vl:OpsMmEmbedder",
    "jina_v4": "jina_v4:JinaV4Embedder",
    "qwen3_vl_embedding": "qwen3_vl:Qwen3VlEmbedder",
}


def embedder_class(family: str) -> Any:
    module, _, name = MLLM_FAMILIES[family].partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def load_mllm(spec: ModelSpec, options: RuntimeOptions) -> Any:
    return embedder_class(spec.family).load(spec, options)


def mllm_prompt_card(spec: ModelSpec) -> dict[str, str]:
    return dict(embedder_class(spec.family).prompt_card(spec))

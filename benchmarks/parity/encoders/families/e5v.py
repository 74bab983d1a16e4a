"""E5-V: marsbench's `e5v` adapter against the reference's `models/e5v.py` with
`E5VImageEncoder` / `E5VTextEncoder` (transformers' LLaVA-Next classes, no third-party code)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from benchmarks.parity.encoders.cases import Case
from benchmarks.parity.encoders.environments import REFERENCE_ENV
from benchmarks.parity.encoders.families.qwen3_vl import legacy_config, legacy_tokenizer_config

THIRD_PARTY: list[Any] = []


def hub_weight_names(folder: Path) -> None:
    """The vision tower's tensors under `vision_tower.vision_model.*`, as royokong/e5-v (a
    CLIPVisionModel tower) stores them; transformers 5 writes them without `vision_model.`, which
    4.57 does not map (it would leave the tower randomly initialised)."""
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    renamed = {}
    for key, value in load_file(path).items():
        if key.startswith("vision_tower.") and not key.startswith("vision_tower.vision_model."):
            key = "vision_tower.vision_model." + key.removeprefix("vision_tower.")
        renamed[key] = value
    save_file(renamed, path, metadata={"format": "pt"})


def build_e5v(folder: Path, third_party: Path) -> dict[str, Any]:
    """A tiny E5-V in royokong/e5-v's layout (config + safetensors, preprocessor_config.json and
    tokenizer files, no processor_config.json), readable by transformers 4.57 and 5 alike."""
    from tests.encoder.mllm.tiny_e5v import write_tiny_e5v

    if folder.exists():
        shutil.rmtree(folder)
    write_tiny_e5v(folder)
    hub_weight_names(folder)
    config = legacy_config(folder)
    # royokong/e5-v's tokenizer_config.json names PreTrainedTokenizerFast (Llama-3's tokenizer.json).
    legacy_tokenizer_config(folder, "PreTrainedTokenizerFast")
    return {"source": f"local-dir:{folder}", "dimension": int(config["text_config"]["hidden_size"])}


CASES = [
    Case(
        name="e5-v",
        models=("e5-v",),
        env=REFERENCE_ENV,
        build=build_e5v,
        reference="e5v.py",
        notes=(
            "tiny LLaVA-Next (CLIP 28-px crops, 14-px patches, Llama-3-like BPE tokenizer built in "
            "code); the tokenizer pads on the right (its default), so short texts are pooled at a "
            "pad token on both sides, as the reference does."
        ),
    )
]

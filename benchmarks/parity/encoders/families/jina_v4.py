"""jina-embeddings-v4: marsbench's `jina_v4` adapter against the reference's `models/jina.py`
(`build_jina_components`, `JinaImageEncoder`, `JinaTextEncoder`), which loads the model with
`AutoModel.from_pretrained(..., trust_remote_code=True)`: the hub's remote code
(`modeling_jina_embeddings_v4.py`, `configuration_jina_embeddings_v4.py`, `custom_lora_module.py`,
`qwen2_5_vl.py`; marsbench pins revision 509c5332bacf540daad3c8fcead31c9abf2e2452).

The hub files are not reachable offline and no public GitHub copy found names both its origin and
an unedited state (`find_string "class JinaEmbeddingsV4Model"`: the one copy that looks unedited is
an excerpt whose repository the index does not name; the others add "thought tokens", debug dumps
or rewrite imports). The copy used is the earliest commit of onlylrs/SmartEmbed (b3d93e3, 2025-08-01,
"add missing core files"), `src/models/`: relative imports, the four remote-code files, with
`modeling_jina_embeddings_v4.py` stored as `modeling_qwen2_5_vl.py`. Known edits against the
unedited-looking excerpt: `from_pretrained` builds the processor after loading and treats a missing
`adapters/` folder as "no LoRA" (same behaviour when the folder exists); the config class gives
`task_names`/`matryoshka_dims`/`truncate_dim` defaults (the tiny config sets all three). Its
identity with the hub files at 509c533 is not verified.

What the copy does that marsbench reads differently (findings, not hidden here):
- `text_max_length = 32768` and `encode_text(max_length=32768)`; marsbench truncates at 8192
  (`TEXT_MAX_LENGTH`, said to be the pinned revision's value). The tiny texts are far shorter.
- one multi-task adapter in `adapters/` (`lora_A.<task>.weight`, `MultiAdapterLinear`); marsbench's
  default reading is per-task `adapters/<task>/`. The tiny model is built in the copy's layout.
- `_process_batches` runs every forward under `torch.autocast(device_type=<device>, dtype=bfloat16)`,
  on the CPU too; marsbench runs fp32 on the CPU (autocast only on CUDA). Two cases: the reference
  as it runs (bf16 autocast on the CPU), and the same with CPU autocast disabled in the reference
  process (a stand-in that isolates everything but the autocast).
- `encode_text`/`encode_image` batch 8 items per forward (the reference passes no batch size);
  marsbench sends each modality in one request.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from benchmarks.parity.encoders.cases import Case, Source
from benchmarks.parity.encoders.environments import REFERENCE_ENV
from benchmarks.parity.encoders.families.qwen3_vl import (
    legacy_config,
    legacy_tokenizer_config,
    split_processor,
)

COPY = "src/models"
# hub file name -> path in the copy
REMOTE_FILES = {
    "modeling_jina_embeddings_v4.py": f"{COPY}/modeling_qwen2_5_vl.py",
    "configuration_jina_embeddings_v4.py": f"{COPY}/configuration_jina_embeddings_v4.py",
    "custom_lora_module.py": f"{COPY}/custom_lora_module.py",
    "qwen2_5_vl.py": f"{COPY}/qwen2_5_vl.py",
}

JINA_SOURCE = Source(
    name="jina_v4",
    repo="https://github.com/onlylrs/SmartEmbed",
    commit="b3d93e3b3e5fe07e9d4cbaf90066cee0e5f026a6",
    paths=tuple(REMOTE_FILES.values()),
    sha256={
        f"{COPY}/modeling_qwen2_5_vl.py": "f17e2c83fdde74967d6e4c28cfecf57dd5337633e8b1309cc311105ba464cbb4",
        f"{COPY}/configuration_jina_embeddings_v4.py": (
            "e8af58c1f20c656aeb0e4101f33bb30e30f536a448240fb173c4f1c622d3bc6e"
        ),
        f"{COPY}/custom_lora_module.py": "7abdcfbbbc2106763dba8a739c6fddd70729c901ee13b4b072c14147191c7ebd",
        f"{COPY}/qwen2_5_vl.py": "9159481abb0bd1fadc01d5268eb29d979b70ff553d301c70177bba83b5fac7a5",
    },
    what=(
        "hub remote code of jinaai/jina-embeddings-v4 as copied into onlylrs/SmartEmbed's first "
        "commit (modeling_jina_embeddings_v4.py stored as modeling_qwen2_5_vl.py; from_pretrained "
        "and the config defaults edited); identity with the hub files at 509c533 not verified"
    ),
)

THIRD_PARTY = [JINA_SOURCE]

TASKS = ["retrieval", "text-matching", "code"]
MULTI_VECTOR_DIM = 16  # the real one: 128
AUTO_MAP = {
    "AutoConfig": "configuration_jina_embeddings_v4.JinaEmbeddingsV4Config",
    "AutoModel": "modeling_jina_embeddings_v4.JinaEmbeddingsV4Model",
}


def hub_adapter(folder: Path, hidden: int) -> None:
    """Make the tiny checkpoint what the copy's remote code loads: the `multi_vector_projector`
    (weights in model.safetensors, LoRA per task in the adapter; the remote code calls it with
    `task_label=`, so the adapter must target it; marsbench's single-vector path ignores both), and
    the adapter's tensors named after the copy's modules (`model.language_model.layers.*`; peft
    matches names as they are, and the tests' pre-4.52 names `model.layers.*` load nothing, with a
    warning only), without the tests' vision-tower LoRA."""
    import torch
    from safetensors.torch import load_file, save_file

    generator = torch.Generator().manual_seed(7)
    path = folder / "model.safetensors"
    tensors = load_file(path)
    tensors["multi_vector_projector.weight"] = (
        torch.randn(MULTI_VECTOR_DIM, hidden, generator=generator) * 0.1
    )
    tensors["multi_vector_projector.bias"] = torch.zeros(MULTI_VECTOR_DIM)
    save_file(tensors, path, metadata={"format": "pt"})

    adapters = folder / "adapters"
    weights = adapters / "adapter_model.safetensors"
    prefix = "base_model.model."
    lora: dict[str, Any] = {}
    for key, value in load_file(weights).items():
        name = key.removeprefix(prefix)
        if name.startswith(("visual.", "model.visual.")):
            continue
        if name.startswith("model.layers."):
            name = "model.language_model." + name.removeprefix("model.")
        lora[prefix + name] = value
    # The copy's language model calls every attention and MLP linear layer with `task_label`, so
    # the adapter covers them all (the hub's does); the tests' adapter names a few: the rest get
    # random LoRA tensors here, and so does the projector.
    shapes = {"multi_vector_projector": (MULTI_VECTOR_DIM, hidden)}
    for key, value in tensors.items():
        match = re.match(r"^model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+_proj)\.weight$", key)
        if match:
            shapes[f"model.language_model.layers.{match[1]}.{match[2]}.{match[3]}"] = tuple(value.shape)
    for module, (out_features, in_features) in sorted(shapes.items()):
        for task in TASKS:
            a, b = f"{prefix}{module}.lora_A.{task}.weight", f"{prefix}{module}.lora_B.{task}.weight"
            if a not in lora:
                lora[a] = torch.randn(4, in_features, generator=generator) * 0.3
                lora[b] = torch.randn(out_features, 4, generator=generator) * 0.3
    save_file(lora, weights)
    config_path = adapters / "adapter_config.json"
    config = json.loads(config_path.read_text())
    # Exactly the modules the tensors name (a regex, as the hub's adapter config has it): the
    # language model's layers and the projector. The copy's vision tower calls its linear layers
    # without `task_label`, which MultiAdapterLinear requires, so no adapter of it can target them.
    modules = sorted({key.removeprefix(prefix).partition(".lora_")[0] for key in lora})
    config["target_modules"] = "^(" + "|".join(re.escape(m) for m in modules) + ")$"
    config_path.write_text(json.dumps(config))


def build_jina_v4(folder: Path, third_party: Path) -> dict[str, Any]:
    """A tiny jina-embeddings-v4 in the hub layout the copy's remote code loads: Qwen2.5-VL weights
    in the pre-4.52 key layout, one multi-task LoRA adapter in `adapters/`, processor and tokenizer
    files, config.json with `auto_map`, and the four remote-code files beside them."""
    from tests.encoder.mllm.tiny_qwen_vl import qwen2_5_vl_processor, write_tiny_jina_v4

    source = third_party / JINA_SOURCE.name
    missing = [p for p in JINA_SOURCE.paths if not (source / p).is_file()]
    if missing:
        raise FileNotFoundError(f"{source}: {missing} missing; run `setup` (or pass --third-party)")
    if folder.exists():
        shutil.rmtree(folder)
    write_tiny_jina_v4(folder, layout="multi", legacy_weights=True)
    split_processor(folder, qwen2_5_vl_processor())
    config = legacy_config(
        folder,
        architectures=["JinaEmbeddingsV4Model"],
        auto_map=AUTO_MAP,
        task_names=TASKS,
        matryoshka_dims=[8, 16, 32],
        truncate_dim=None,
        multi_vector_projector_dim=MULTI_VECTOR_DIM,
        single_vector_pool_strategy="mean",
        verbosity=0,
    )
    legacy_tokenizer_config(folder, "Qwen2Tokenizer")
    hidden = int(config["text_config"]["hidden_size"])
    hub_adapter(folder, hidden)
    for hub_name, path in REMOTE_FILES.items():
        shutil.copyfile(source / path, folder / hub_name)
    return {"source": f"local-dir:{folder}", "dimension": hidden}


_NOTES = (
    "remote code: onlylrs/SmartEmbed@b3d93e3 src/models (a copy of the hub files with from_pretrained "
    "and config defaults edited; identity with the hub files at 509c533 not verified). Tiny "
    "Qwen2.5-VL (2 layers, 32 wide), one multi-task adapter in adapters/ (the copy's layout; "
    "marsbench's default reading is adapters/<task>/), tokenizer saved left-padded (marsbench pads "
    "right), the copy's text_max_length 32768 vs marsbench's 8192 not exercised (short texts)."
)

CASES = [
    Case(
        name="jina-embeddings-v4",
        models=("jina-embeddings-v4",),
        env=REFERENCE_ENV,
        build=build_jina_v4,
        reference="jina_v4.py",
        third_party=("jina_v4",),
        encoder={"cpu_precision": "reference"},
        informational="bf16 on both sides, but marsbench merges the retrieval LoRA into the weights while "
        "the remote code applies it beside them: in bf16 the two round differently (in fp32 they agree, "
        "case jina-v4-no-autocast)",
        notes=_NOTES + " Reference as it runs: the remote code's bf16 autocast on the CPU; marsbench under "
        "MARSBENCH_ENCODER_CPU_PRECISION=reference (bf16 autocast over fp32 weights, the registry's "
        "cpu_precision).",
    ),
    Case(
        name="jina-v4-no-autocast",
        models=("jina-embeddings-v4",),
        env=REFERENCE_ENV,
        build=build_jina_v4,
        reference="jina_v4.py",
        third_party=("jina_v4",),
        notes=_NOTES + " Stand-in: CPU autocast disabled in the reference process (fp32 both sides).",
    ),
]

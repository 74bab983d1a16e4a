"""Tiny random Qwen2.5-VL (jina-embeddings-v4) and Qwen3-VL (Qwen3-VL-Embedding) models, built in
code and saved as their hub repositories lay them out, so the adapters load them exactly as they
load the real ones.

The tokenizer is a byte-level BPE trained here on a few sentences (no download), wrapped in
transformers' Qwen2 tokenizer class, with the Qwen special tokens at the ids the configs name.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

# The Qwen special tokens, first in the vocabulary so their ids are fixed.
SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
TOKEN_IDS = {token: i for i, token in enumerate(SPECIALS)}
VOCAB = 800  # model embeddings; the tokenizer has ~760 tokens, over the vocabulary check's floor (400)

_CORPUS = [
    "a crater on the surface of Mars seen from orbit",
    "a field of yardangs carved by the wind",
    "an alluvial fan at the mouth of a channel",
    "a satellite photo of dunes, a type of martian terrain",
    "a high-resolution remote sensing image of gullies on Mars",
    "Represent the user's input. Describe the image. Query: Passage: system user assistant",
    "Find an image that matches the given text; you are a helpful assistant",
    "glacier-like form, layered deposits, recurring slope lineae, polar cap, impact ejecta",
    "the quick brown fox jumps over the lazy dog 0123456789 !?.,:;'\"()[]{}<>-_/\\|+=*&^%$#@~`",
]


def _corpus() -> list[str]:
    """The sentences above plus pseudo-words, enough for a ~760-token vocabulary."""
    generator = torch.Generator().manual_seed(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = [
        "".join(letters[int(i)] for i in torch.randint(0, 26, (int(n),), generator=generator))
        for n in torch.randint(2, 7, (600,), generator=generator)
    ]
    return _CORPUS * 4 + [" ".join(words[i : i + 8]) for i in range(0, len(words), 8)] * 2


# A chat template rendering the Qwen-VL conversation format for what the embedders send: a
# system message and a user message whose content is a list of text and image items, then the
# generation prompt. The real Qwen3-VL template renders these conversations the same way
# (`<|im_start|>{role}\n{content}<|im_end|>\n`, an image item as
# `<|vision_start|><|image_pad|><|vision_end|>`, `<|im_start|>assistant\n` as generation prompt).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.content is string %}{{- message.content }}"
    "{%- else %}{%- for item in message.content %}"
    "{%- if item.type == 'image' or 'image' in item %}{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif 'text' in item %}{{- item.text }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@lru_cache(maxsize=1)
def _bpe_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=760,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    return tokenizer.to_str()


def tokenizer(padding_side: str = "right") -> Any:
    from tokenizers import Tokenizer
    from transformers import Qwen2TokenizerFast

    backend = Tokenizer.from_str(_bpe_json())
    return Qwen2TokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        additional_special_tokens=SPECIALS[1:],
        padding_side=padding_side,
    )


def _ids() -> dict[str, int]:
    return {
        "image_token_id": TOKEN_IDS["<|image_pad|>"],
        "video_token_id": TOKEN_IDS["<|video_pad|>"],
        "vision_start_token_id": TOKEN_IDS["<|vision_start|>"],
        "vision_end_token_id": TOKEN_IDS["<|vision_end|>"],
    }


def _text(**extra: Any) -> dict[str, Any]:
    return {
        "vocab_size": VOCAB,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "pad_token_id": TOKEN_IDS["<|endoftext|>"],
        "bos_token_id": TOKEN_IDS["<|endoftext|>"],
        "eos_token_id": TOKEN_IDS["<|im_end|>"],
        **extra,
    }


# -- jina-embeddings-v4: Qwen2.5-VL ------------------------------------------------------------


def qwen2_5_vl_config() -> Any:
    from transformers import Qwen2_5_VLConfig

    text = _text(rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]})
    vision = {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 56,
        "out_hidden_size": 32,
        "fullatt_block_indexes": [1],
    }
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **_ids())


def qwen2_5_vl_processor() -> Any:
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    images = Qwen2VLImageProcessor(
        min_pixels=56 * 56, max_pixels=112 * 112, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    return Qwen2_5_VLProcessor(
        image_processor=images,
        tokenizer=tokenizer("left"),
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )


def _to_legacy_layout(folder: Path) -> None:
    """Rewrite the saved weights with the pre-4.52 Qwen2.5-VL key names (`model.layers.*`,
    `visual.*`), the layout the jina remote code (`key_mapping=_checkpoint_conversion_mapping`)
    reads."""
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    renamed = {}
    for key, value in load_file(path).items():
        key = re.sub(r"^model\.language_model\.", "model.", key)
        key = re.sub(r"^model\.visual\.", "visual.", key)
        renamed[key] = value
    save_file(renamed, path, metadata={"format": "pt"})


def _lora_tensors(
    model: torch.nn.Module, modules: list[str], rank: int, seed: int
) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    named = dict(model.named_modules())
    for name in modules:
        layer = named[name]
        tensors[f"{name}.lora_A.weight"] = torch.randn(rank, layer.in_features, generator=generator) * 0.3
        tensors[f"{name}.lora_B.weight"] = torch.randn(layer.out_features, rank, generator=generator) * 0.3
    return tensors


def _legacy_name(name: str) -> str:
    name = re.sub(r"^model\.language_model\.", "model.", name)
    return re.sub(r"^model\.visual\.", "visual.", name)


def write_tiny_jina_v4(folder: Path, *, layout: str = "per-task", legacy_weights: bool = True) -> Path:
    """A jina-embeddings-v4-like repository: Qwen2.5-VL weights plus LoRA adapters under
    `adapters/`. `layout="per-task"`: one standard peft adapter per task in
    `adapters/<task>/` (the current hub layout). `layout="multi"`: one adapter in `adapters/`
    whose weights hold every task (`lora_A.<task>.weight`, the older remote code's
    MultiAdapterLinear)."""
    from safetensors.torch import save_file
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    model = Qwen2_5_VLForConditionalGeneration(qwen2_5_vl_config()).eval()
    model.save_pretrained(folder)
    if legacy_weights:
        _to_legacy_layout(folder)
    qwen2_5_vl_processor().save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["task_names"] = ["retrieval", "text-matching", "code"]
    (folder / "config.json").write_text(json.dumps(config, indent=2))

    layers = [
        f"model.language_model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")
    ]
    layers += ["model.language_model.layers.1.mlp.down_proj", "model.visual.blocks.0.mlp.up_proj"]
    lora = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "bias": "none"}
    lora["target_modules"] = sorted({name.rsplit(".", 1)[-1] for name in layers})
    prefix = "base_model.model."
    tasks = {"retrieval": 1, "text-matching": 2, "code": 3}
    if layout == "per-task":
        for task, seed in tasks.items():
            target = folder / "adapters" / task
            target.mkdir(parents=True)
            tensors = _lora_tensors(model, layers, 4, seed)
            save_file(
                {prefix + _legacy_name(k): v for k, v in tensors.items()},
                target / "adapter_model.safetensors",
            )
            (target / "adapter_config.json").write_text(json.dumps(lora))
    else:
        target = folder / "adapters"
        target.mkdir()
        merged: dict[str, torch.Tensor] = {}
        for task, seed in tasks.items():
            for key, value in _lora_tensors(model, layers, 4, seed).items():
                name = (
                    _legacy_name(key)
                    .replace(".lora_A.", f".lora_A.{task}.")
                    .replace(".lora_B.", f".lora_B.{task}.")
                )
                merged[prefix + name] = value
        save_file(merged, target / "adapter_model.safetensors")
        (target / "adapter_config.json").write_text(json.dumps(lora))
    return folder


# -- Qwen3-VL-Embedding: Qwen3-VL ---------------------------------------------------------------


def qwen3_vl_config() -> Any:
    from transformers import Qwen3VLConfig

    text = _text(
        head_dim=8,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [2, 1, 1],
            "mrope_interleaved": True,
        },
    )
    vision = {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "out_hidden_size": 32,
        "num_position_embeddings": 64,
        "deepstack_visual_indexes": [0],
    }
    return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **_ids())


def qwen3_vl_processor() -> Any:
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    # The hub processor's own resize bounds differ from the embedder's (which pre-resizes and
    # passes do_resize=False); a narrow range here makes a missed do_resize visible.
    images = Qwen2VLImageProcessor(
        min_pixels=32 * 32 * 4,
        max_pixels=32 * 32 * 4,
        patch_size=16,
        merge_size=2,
        temporal_patch_size=2,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return Qwen3VLProcessor(
        image_processor=images,
        tokenizer=tokenizer("left"),
        video_processor=Qwen3VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )


def write_tiny_qwen3_vl_embedding(folder: Path) -> Path:
    """A Qwen3-VL-Embedding-like repository: the hub saves the `Qwen3VLModel` inside its
    embedding wrapper, i.e. `model.*` weights and no lm_head."""
    from safetensors.torch import save_file
    from transformers import Qwen3VLModel

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    model = Qwen3VLModel(qwen3_vl_config()).eval()
    model.save_pretrained(folder)
    state = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    for old in folder.glob("model*.safetensors"):
        old.unlink()
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    qwen3_vl_processor().save_pretrained(folder)
    return folder

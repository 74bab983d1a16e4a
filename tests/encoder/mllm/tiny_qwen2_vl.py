"""A tiny random Qwen2-VL, its processor and a byte-level BPE tokenizer, all built in code and saved
as the hub repositories lay them out (GME, Ops-MM: full weights; VLM2Vec / B3: a LoRA adapter beside
a config and processor files, with the base weights elsewhere, or the adapter merged in).

The special tokens sit at the ids the config names, as in the real Qwen2-VL vocabulary (where they
follow the ~151k ordinary tokens); here they follow ~800 ordinary tokens.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch

# Qwen2-VL's special tokens, in the real vocabulary's order.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
ORDINARY = 800
VOCAB = 832  # embedding rows: ordinary + special tokens + spare rows, as the real model has
TOKEN_ID = {token: ORDINARY + i for i, token in enumerate(SPECIAL_TOKENS)}
# Small pixel bounds so that a test image is a handful of patches (4 merged tokens at 56x56).
MIN_PIXELS = 56 * 56
MAX_PIXELS = 112 * 112

_CORPUS = [
    "a photo of a crater, a type of martian terrain",
    "a satellite photo of yardangs. a high-resolution remote sensing image of an alluvial fan on Mars.",
    "Find an image that matches the given text. You are a helpful assistant.",
    "Represent the given image with the following question: What is in the image",
    "glacier-like form, dunes, slope streaks, dark sand, bright dust, channels, gullies, layered deposits",
    "the quick brown fox jumps over the lazy dog 0123456789 !?,.:;'\"()[]{}<>/\\|-_=+*&^%$#@~`",
]


@lru_cache(maxsize=1)
def tokenizer_json() -> str:
    """A byte-level BPE with exactly ORDINARY ordinary tokens, then the special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=ORDINARY,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Repeating the corpus with variations lets BPE learn enough merges to fill the vocabulary.
    lines = [f"{line} {i} {line.upper()} {line[::-1]}" for i in range(40) for line in _CORPUS]
    tokenizer.train_from_iterator(lines, trainer=trainer)
    if tokenizer.get_vocab_size() != ORDINARY:
        raise AssertionError(f"BPE learned {tokenizer.get_vocab_size()} tokens, wanted {ORDINARY}")
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    return tokenizer.to_str()


def write_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer
    from transformers import Qwen2TokenizerFast

    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=Tokenizer.from_str(tokenizer_json()),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    for token, token_id in TOKEN_ID.items():
        if tokenizer.convert_tokens_to_ids(token) != token_id:
            raise AssertionError(f"{token} has id {tokenizer.convert_tokens_to_ids(token)}, not {token_id}")
    tokenizer.save_pretrained(folder)


def config(seed_layers: int = 2) -> object:
    from transformers import Qwen2VLConfig

    return Qwen2VLConfig(
        text_config={
            "vocab_size": VOCAB,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": seed_layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 512,
            # head_dim 8 -> 4 rotary frequencies split over (temporal, height, width)
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
            "bos_token_id": TOKEN_ID["<|endoftext|>"],
            "eos_token_id": TOKEN_ID["<|im_end|>"],
            "pad_token_id": TOKEN_ID["<|endoftext|>"],
        },
        vision_config={
            "depth": 1,
            "embed_dim": 16,
            "hidden_size": 32,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=TOKEN_ID["<|image_pad|>"],
        video_token_id=TOKEN_ID["<|video_pad|>"],
        vision_start_token_id=TOKEN_ID["<|vision_start|>"],
        vision_end_token_id=TOKEN_ID["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def random_model(seed: int = 0) -> torch.nn.Module:
    from transformers import Qwen2VLForConditionalGeneration

    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config())
    # Random init leaves small weights whose outputs barely differ between inputs; widen them so
    # that pooling the wrong token or using the wrong positions shows in the vectors.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim >= 2:
                parameter.normal_(0.0, 0.3 if "embed" in name else 0.15)
    return model.eval()


def write_processor(folder: Path) -> None:
    from transformers import AutoTokenizer, Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    video_processor = Qwen2VLVideoProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    Qwen2VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor
    ).save_pretrained(folder)


def write_full(folder: Path, seed: int = 0) -> Path:
    """GME / Ops-MM / a merged VLM2Vec: config, full weights, tokenizer and processor."""
    folder.mkdir(parents=True, exist_ok=True)
    random_model(seed).save_pretrained(folder)
    write_tokenizer(folder)
    write_processor(folder)
    return folder


def lora_model(base: torch.nn.Module, seed: int = 1, *, use_dora: bool = False) -> torch.nn.Module:
    """`base` wrapped with a random, non-zero LoRA on the language model's projections."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        use_dora=use_dora,
        lora_dropout=0.0,
    )
    torch.manual_seed(seed)
    wrapped = get_peft_model(base, lora)
    with torch.no_grad():
        for name, parameter in wrapped.named_parameters():
            if "lora_B" in name:  # peft starts B at zero, i.e. an adapter that does nothing
                parameter.normal_(0.0, 0.2)
    return wrapped.eval()


def write_adapter(folder: Path, base_folder: Path, *, use_dora: bool = False) -> Path:
    """A VLM2Vec-style repository: adapter_config.json + adapter weights, config.json and the processor
    files, no base weights; adapter_config names `base_folder` as its base model."""
    from transformers import Qwen2VLForConditionalGeneration

    folder.mkdir(parents=True, exist_ok=True)
    base = Qwen2VLForConditionalGeneration.from_pretrained(base_folder)
    wrapped = lora_model(base, use_dora=use_dora)
    wrapped.save_pretrained(folder)
    # VLM2Vec trained on its vendored Qwen2-VL of transformers < 4.52, whose module tree had the text
    # decoder at `model.` and the vision tower at `visual.`: its adapters carry those names.
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "adapter_model.safetensors")
    save_file({old_layout_key(k): v for k, v in weights.items()}, folder / "adapter_model.safetensors")
    adapter_config = json.loads((folder / "adapter_config.json").read_text())
    adapter_config["base_model_name_or_path"] = str(base_folder)
    (folder / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2))
    base.config.save_pretrained(folder)
    write_tokenizer(folder)
    write_processor(folder)
    return folder


def old_layout_key(key: str) -> str:
    key = key.replace("base_model.model.model.language_model.", "base_model.model.model.")
    return key.replace("base_model.model.model.visual.", "base_model.model.visual.")


def new_layout_key(key: str) -> str:
    """An old-layout adapter key as peft saves it from a transformers 5 model."""
    if key.startswith("base_model.model.visual."):
        return key.replace("base_model.model.visual.", "base_model.model.model.visual.", 1)
    return key.replace("base_model.model.model.", "base_model.model.model.language_model.", 1)


def write_merged(folder: Path, base_folder: Path) -> Path:
    """The same adapter merged into full weights (a "LoRA baked" repository)."""
    from transformers import Qwen2VLForConditionalGeneration

    base = Qwen2VLForConditionalGeneration.from_pretrained(base_folder)
    merged = lora_model(base).merge_and_unload()
    folder.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(folder)
    write_tokenizer(folder)
    write_processor(folder)
    return folder

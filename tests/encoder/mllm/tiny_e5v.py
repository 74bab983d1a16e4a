"""A tiny random E5-V: LLaVA-Next (CLIP vision tower + Llama text model) with a Llama-3-like tokenizer.

Laid out as royokong/e5-v is on the hub: config + safetensors, a LlavaNext image processor and a fast
tokenizer whose post-processor puts <|begin_of_text|> in front of every text (as Llama-3's
tokenizer.json does), and no processor patch size (the hub repo has no processor_config.json, which
is why the reference sets `processor.patch_size = 14`). The vision tower therefore uses 14-pixel
patches, on 28-pixel crops, so that the fixed patch size fits it.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

CROP = 28
PATCH = 14  # what the reference forces on the processor; the tower must match it
PINPOINTS = [[CROP, 2 * CROP], [2 * CROP, CROP], [2 * CROP, 2 * CROP]]
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]

BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
HEADER_START, HEADER_END, EOT = "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"
IMAGE = "<image>"
# Llama-3's order: the special tokens follow the BPE vocabulary, <image> is added after them.
SPECIALS = [BOS, EOS, HEADER_START, HEADER_END, EOT]
BPE_SIZE = 760

_DOMAIN_TEXT = (
    "summary above image sentence in one word user assistant a photo of crater yardang alluvial fan "
    "satellite high resolution remote sensing martian terrain mars dune gully glacier like form slope "
    "streak channel ridge cone layered delta the an on type dark bright wind rock dust ice valley"
)


def _corpus() -> list[str]:
    """Domain words plus seeded pseudo-words, enough for the BPE to learn BPE_SIZE tokens."""
    rng = random.Random(0)
    syllables = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
    made = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(3000)]
    words = _DOMAIN_TEXT.split() + made
    return [" ".join(words[i : i + 12]) for i in range(0, len(words), 12)]


def build_tokenizer() -> object:
    """A byte-level BPE with Llama-3's special tokens, BOS added by the post-processor."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_SIZE, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    raw.train_from_iterator(_corpus() * 4, trainer=trainer)
    raw.add_special_tokens(SPECIALS)
    bos_id = raw.token_to_id(BOS)
    raw.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token=BOS, eos_token=EOT, pad_token=EOT, model_max_length=4096
    )
    tokenizer.add_tokens([IMAGE], special_tokens=True)
    return tokenizer


def build_processor(tokenizer: object) -> object:
    from transformers import LlavaNextImageProcessor, LlavaNextProcessor

    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": CROP},
        crop_size={"height": CROP, "width": CROP},
        image_grid_pinpoints=PINPOINTS,
        image_mean=MEAN,
        image_std=STD,
        do_pad=True,
    )
    # patch_size and vision_feature_select_strategy left unset, as on the hub
    return LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer)


def write_tiny_e5v(folder: Path, seed: int = 0, padding_side: str | None = None) -> Path:
    """Save a tiny E5-V to `folder`; `padding_side` (if given) is written into the tokenizer config."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextConfig, LlavaNextForConditionalGeneration

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    if padding_side is not None:
        tokenizer.padding_side = padding_side
        tokenizer.init_kwargs["padding_side"] = padding_side
    processor = build_processor(tokenizer)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in [*SPECIALS, IMAGE]}
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=ids[BOS],
        eos_token_id=ids[EOT],
        rope_theta=500000.0,
    )
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=CROP,
        patch_size=PATCH,
        projection_dim=32,
    )
    config = LlavaNextConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=ids[IMAGE],
        image_grid_pinpoints=PINPOINTS,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )
    model = LlavaNextForConditionalGeneration(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    # The hub repo's layout: preprocessor_config.json and tokenizer files, no processor_config.json.
    processor.image_processor.save_pretrained(folder)
    processor.tokenizer.save_pretrained(folder)
    return folder

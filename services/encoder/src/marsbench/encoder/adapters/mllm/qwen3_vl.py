"""Qwen3-VL-Embedding as the reference runs it (QwenLM/Qwen3-VL-Embedding
src/models/qwen3_vl_embedding.py, the hub's scripts/qwen3_vl_embedding.py), on transformers'
Qwen3VLModel.

Facts:
- every input is a conversation: a system message holding the instruction (default
  "Represent the user's input."; a given instruction is stripped and gets a "." unless it ends in
  Unicode punctuation) and a user message holding the image or the text; it is rendered with the
  model's chat template and `add_generation_prompt=True`, so it ends in `<|im_start|>assistant\\n`;
- images are pre-resized as qwen-vl-utils does (RGBA on white, smart_resize to multiples of 32
  within min/max pixels 4096 / 1843200, PIL's default resampling), then the processor runs with
  `do_resize=False`; truncation at 8192 tokens;
- right padding, a plain forward (position_ids None: M-RoPE from the attention mask each call);
- pooling: the last hidden state at the last 1 of the attention mask, L2-normalised.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from PIL import Image

from marsbench.encoder.adapters.base import PromptOptions
from marsbench.encoder.adapters.mllm.base import MllmEmbedder
from marsbench.encoder.adapters.mllm.pooling import last_in_mask
from marsbench.encoder.registry import ModelSpec

DEFAULT_INSTRUCTION = "Represent the user's input."
IMAGE_FACTOR = 32  # patch 16 x spatial merge 2
MIN_PIXELS = 4 * IMAGE_FACTOR * IMAGE_FACTOR
MAX_PIXELS = 1800 * IMAGE_FACTOR * IMAGE_FACTOR
MAX_RATIO = 200
MAX_LENGTH = 8192


def normalized_instruction(instruction: str) -> str:
    """The reference's rule: strip, then end in punctuation; an empty one means the default."""
    instruction = instruction.strip()
    if not instruction:
        return DEFAULT_INSTRUCTION
    if not unicodedata.category(instruction[-1]).startswith("P"):
        instruction += "."
    return instruction


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """qwen-vl-utils' target size: each side a multiple of `factor`, the area within bounds,
    the aspect ratio kept as closely as the rounding allows."""
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise ValueError(f"aspect ratio of a {width}x{height} image is over {MAX_RATIO}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


class Qwen3VlEmbedder(MllmEmbedder):
    model_class = "Qwen3VLModel"
    # The reference hands Qwen3-VL-Embedding file paths; qwen-vl-utils flattens RGBA onto white.
    keeps_alpha = True
    image_preparation: ClassVar[str] = (
        "RGBA on white, PIL resize to multiples of 32 within the pixel bounds (qwen-vl-utils); "
        "processor do_resize=False"
    )
    padding_side = "right"
    accepts_instruction = True
    default_instructions: ClassVar[dict[str, str]] = {
        "text": DEFAULT_INSTRUCTION,
        "image": DEFAULT_INSTRUCTION,
    }

    @classmethod
    def instruction_of(cls, spec: ModelSpec, modality: str, requested: str | None = None) -> str:
        return normalized_instruction(super().instruction_of(spec, modality, requested))

    # -- prompts -------------------------------------------------------------------------------

    def render(self, instruction: str, item: dict[str, str]) -> str:
        conversation = [
            {"role": "system", "content": [{"type": "text", "text": instruction}]},
            {"role": "user", "content": [item]},
        ]
        return str(
            self.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        )

    def text_prompts(self, texts: Sequence[str], options: PromptOptions) -> list[str]:
        instruction = self.instruction_of(self.spec, "text", options.instruction)
        return [self.render(instruction, {"type": "text", "text": text}) for text in texts]

    def image_prompts(self, count: int, options: PromptOptions) -> list[str]:
        instruction = self.instruction_of(self.spec, "image", options.instruction)
        return [self.render(instruction, {"type": "image"})] * count

    def text_kwargs(self) -> dict[str, Any]:
        return {"truncation": True, "max_length": MAX_LENGTH}

    def image_kwargs(self) -> dict[str, Any]:
        # The images arrive pre-resized (preprocess_image); the hub processor's own bounds differ.
        return {"truncation": True, "max_length": MAX_LENGTH, "do_resize": False}

    # -- images --------------------------------------------------------------------------------

    def preprocess_image(self, image: Image.Image) -> Image.Image:
        if image.mode == "RGBA":
            # qwen-vl-utils flattens transparency onto white rather than dropping the alpha.
            flat = Image.new("RGB", image.size, (255, 255, 255))
            flat.paste(image, mask=image.split()[3])
            image = flat
        else:
            image = image.convert("RGB")
        width, height = image.size
        min_pixels = int(self.spec.options.get("min_pixels", MIN_PIXELS))
        max_pixels = int(self.spec.options.get("max_pixels", MAX_PIXELS))
        new_height, new_width = smart_resize(height, width, IMAGE_FACTOR, min_pixels, max_pixels)
        return image.resize((new_width, new_height))  # PIL's default filter, as qwen-vl-utils

    # -- forward and pooling -------------------------------------------------------------------

    def hidden_states(self, inputs: Any) -> torch.Tensor:
        output = self.module(**inputs, use_cache=False, return_dict=True)
        return output.last_hidden_state

    def pool(self, hidden: torch.Tensor, inputs: Any) -> torch.Tensor:
        return last_in_mask(hidden, inputs["attention_mask"])

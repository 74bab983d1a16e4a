"""The Qwen2-VL-2B embedders: GME, VLM2Vec-V2.0 / B3++ (one procedure), Ops-MM-embedding-v1.

All three run on transformers' own Qwen2-VL classes; what differs is the prompt, the image
pre-resize, the padding side, the position ids fed to the decoder and the pooled token. Facts below
are as the reference (MarsRetrieval models/gme.py, models/vlm2vec.py, models/opsmm_v1.py and their
image_encoder/ text_encoder/ wrappers) runs each model through the published code (the hub's
modeling_gme_qwen2vl.py, TIGER-AI-Lab/VLM2Vec src/model, the hub's ops_mm_embedding_v1.py).

GME (Alibaba-NLP/gme-Qwen2-VL-2B-Instruct)
- prompt `<|im_start|>system\\n{instruction}<|im_end|>\\n<|im_start|>user\\n{input}<|im_end|>\\n
  <|im_start|>assistant\\n<|endoftext|>`, input = the text or `<|vision_start|><|image_pad|><|vision_end|>`;
  instructions: texts `Find an image that matches the given text.`, images `You are a helpful assistant.`
  (the reference embeds images with is_query=False, which forces the default);
- right padding, truncation at 1800 tokens; pooled: the last real token (the trailing <|endoftext|>);
- images: qwen-vl-utils' fetch_image pre-resize (factor 28, 3136..16384*28*28 pixels), then the
  processor's own resize to 200704..1003520 pixels;
- its code embeds the tokens itself and calls the text decoder with no position ids, so every token,
  image tokens included, gets plain sequential positions 0..L-1 (no M-RoPE): reproduced.

VLM2Vec-V2.0 (VLM2Vec/VLM2Vec-V2.0) and B3++ (raghavlite/B3_Qwen2_2B)
- images: `<|image_pad|> Represent the given image with the following question: What is in the image`;
  texts: the raw text; no chat template, no instruction;
- each item is processed alone, then the token ids are padded with the tokenizer's own padding side;
  images under 28 px on a side are first resized to 56x56; processor pixels 3136..1003520;
- pooled: the last real token; a LoRA adapter (PeftModel, unmerged, on Qwen/Qwen2-VL-2B-Instruct) is
  merged here instead, which computes the same function up to rounding;
- its vendored Qwen2-VL caches `rope_deltas` on the module and only computes M-RoPE positions on the
  first forward call of a process; every later call gets plain positions 0..L-1 over the padded
  length. Reproduced as sequential positions on every call; the first call differs only by a
  per-row shift (its image prompt has no <|vision_start|>, so M-RoPE counts the real tokens), which
  rotary attention does not see.

Ops-MM-embedding-v1 (OpenSearch-AI/Ops-MM-embedding-v1-2B)
- GME's prompt template, instruction `You are a helpful assistant.` for texts and images alike;
- left padding; pooled: the batch's last column (the final <|endoftext|> of every row);
- images: fetch_image pre-resize to 200704..1003520 pixels (factor 28), then the processor's;
- full forward with M-RoPE positions computed from the attention mask on every call, as transformers
  4.57 does, text-only batches included (positions counted over the real tokens; transformers 5 would
  count the left pads too, a uniform shift rotary attention does not see, so this only keeps the
  numbers as close as possible).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from marsbench.encoder.adapters.base import DEFAULT_PROMPT, PromptOptions, RuntimeOptions
from marsbench.encoder.adapters.hub import hub_snapshot
from marsbench.encoder.adapters.image_processing import on_backend
from marsbench.encoder.adapters.mllm.base import MllmEmbedder, merge_adapter_state, refuse_missing
from marsbench.encoder.adapters.mllm.pooling import last_column, last_token, sequential_positions
from marsbench.encoder.errors import ModelLoadFailed
from marsbench.encoder.registry import ModelSpec

log = logging.getLogger(__name__)

# The system-prompt template GME and Ops-MM share, verbatim.
CHAT_TEMPLATE = (
    "<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\n{input}<|im_end|>\n"
    "<|im_start|>assistant\n<|endoftext|>"
)
VISION_INPUT = "<|vision_start|><|image_pad|><|vision_end|>"
DEFAULT_INSTRUCTION = "You are a helpful assistant."
GME_TEXT_INSTRUCTION = "Find an image that matches the given text."
VLM2VEC_IMAGE_PROMPT = (
    "<|image_pad|> Represent the given image with the following question: What is in the image"
)

# Qwen2-VL merges 2x2 patches of 14 px: image sides are multiples of 28.
IMAGE_FACTOR = 28
# qwen-vl-utils' fetch_image bounds, as GME's code copies them.
GME_FETCH_MIN_PIXELS = 4 * 28 * 28
GME_FETCH_MAX_PIXELS = 16384 * 28 * 28
# GME's processor bounds and text limit (min/max_image_tokens 256/1280, max_length 1800).
GME_MIN_PIXELS = 256 * 28 * 28
GME_MAX_PIXELS = 1280 * 28 * 28
GME_MAX_LENGTH = 1800
# VLM2Vec's DataArguments resize_min_pixels / resize_max_pixels, and its tiny-image rule.
VLM2VEC_MIN_PIXELS = 4 * 28 * 28
VLM2VEC_MAX_PIXELS = 1280 * 28 * 28
VLM2VEC_SMALLEST_SIDE = 28
VLM2VEC_SMALL_IMAGE_SIZE = (56, 56)
# Ops-MM's processor and fetch_image bounds.
OPS_MM_MIN_PIXELS = 256 * 28 * 28
OPS_MM_MAX_PIXELS = 1280 * 28 * 28


def fetch_resize(image: Image.Image, min_pixels: int, max_pixels: int) -> Image.Image:
    """qwen-vl-utils' fetch_image: RGB, then a resize to sides that are multiples of 28 within the
    pixel bounds, with PIL's default resampling (as the published code calls `image.resize`)."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    image = image.convert("RGB")
    width, height = image.size
    new_height, new_width = smart_resize(
        height, width, factor=IMAGE_FACTOR, min_pixels=min_pixels, max_pixels=max_pixels
    )
    return image.resize((new_width, new_height))


def pixel_bounds(spec: ModelSpec, min_default: int, max_default: int) -> tuple[int, int]:
    return int(spec.options.get("min_pixels", min_default)), int(spec.options.get("max_pixels", max_default))


class _Qwen2VlEmbedder(MllmEmbedder):
    """What the three share: the processor's pixel bounds from the registry options."""

    model_class: ClassVar[str] = "Qwen2VLForConditionalGeneration"
    pixel_defaults: ClassVar[tuple[int, int]] = (GME_MIN_PIXELS, GME_MAX_PIXELS)

    @classmethod
    def load_processor(cls, folder: Path, spec: ModelSpec) -> Any:
        from transformers import AutoProcessor
        from transformers.image_utils import SizeDict

        processor = on_backend(AutoProcessor.from_pretrained(folder, local_files_only=True), folder, spec)
        # The published code passes min/max_pixels to from_pretrained; transformers 5 would then
        # re-send them on every call (a deprecated path), so the bounds are set on the image
        # processor once, where its resize reads them.
        min_pixels, max_pixels = pixel_bounds(spec, *cls.pixel_defaults)
        processor.image_processor.size = SizeDict(shortest_edge=min_pixels, longest_edge=max_pixels)
        return processor

    def decoder(self) -> Any:
        """The Qwen2VLModel (vision tower + text decoder), without the LM head."""
        module = self.module
        return getattr(module, "model", module)

    def run_decoder(self, inputs: Any, position_ids: torch.Tensor) -> torch.Tensor:
        """Last-layer hidden states (after the final norm, as `hidden_states[-1]` of the published
        code) with explicit position ids; the LM head is never run."""
        fields = {key: value for key, value in inputs.items() if key != "mm_token_type_ids"}
        output = self.decoder()(**fields, position_ids=position_ids, use_cache=False, return_dict=True)
        return output.last_hidden_state


class _SystemPromptEmbedder(_Qwen2VlEmbedder):
    """GME and Ops-MM: the instruction as system prompt of one chat turn ending in <|endoftext|>."""

    accepts_instruction = True

    @classmethod
    def prompt_card(cls, spec: ModelSpec) -> dict[str, str]:
        return {**super().prompt_card(spec), "template": CHAT_TEMPLATE}

    def text_prompts(self, texts: Sequence[str], options: PromptOptions) -> list[str]:
        instruction = self.instruction_of(self.spec, "text", options.instruction)
        return [CHAT_TEMPLATE.format(instruction=instruction, input=text) for text in texts]

    def image_prompts(self, count: int, options: PromptOptions) -> list[str]:
        instruction = self.instruction_of(self.spec, "image", options.instruction)
        return [CHAT_TEMPLATE.format(instruction=instruction, input=VISION_INPUT)] * count

    def autocast(self) -> AbstractContextManager[object]:
        # Both published codes run the weights in their loaded dtype (GME fp16, Ops-MM bf16) with
        # no autocast; autocast would move some ops to fp32 and change the numbers.
        return nullcontext()


class GmeEmbedder(_SystemPromptEmbedder):
    # GME's own class holds the vision tower and the text decoder, no LM head.
    model_class: ClassVar[str] = "Qwen2VLModel"
    image_preparation: ClassVar[str] = (
        f"PIL resize to multiples of 28 within {GME_FETCH_MIN_PIXELS}..{GME_FETCH_MAX_PIXELS} pixels "
        "(fetch_image)"
    )
    padding_side: ClassVar[str] = "right"
    default_instructions: ClassVar[dict[str, str]] = {
        "text": GME_TEXT_INSTRUCTION,
        "image": DEFAULT_INSTRUCTION,
    }

    @classmethod
    def published_options(cls, spec: ModelSpec, folder: Path) -> ModelSpec:
        # GME's config class reads max_length, min_image_tokens and max_image_tokens from
        # config.json (defaults 1800, 256, 1280); its processor gets tokens x 28^2 as pixel bounds.
        try:
            config = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            return spec
        published: dict[str, int] = {}
        if isinstance(config.get("max_length"), int):
            published["max_length"] = config["max_length"]
        for key, option in (("min_image_tokens", "min_pixels"), ("max_image_tokens", "max_pixels")):
            if isinstance(config.get(key), int):
                published[option] = config[key] * IMAGE_FACTOR * IMAGE_FACTOR
        return spec.model_copy(update={"options": published | spec.options}) if published else spec

    def preprocess_image(self, image: Image.Image) -> Any:
        return fetch_resize(image, GME_FETCH_MIN_PIXELS, GME_FETCH_MAX_PIXELS)

    def text_kwargs(self) -> dict[str, Any]:
        return {"truncation": True, "max_length": int(self.spec.options.get("max_length", GME_MAX_LENGTH))}

    def image_kwargs(self) -> dict[str, Any]:
        return self.text_kwargs()

    def hidden_states(self, inputs: Any) -> torch.Tensor:
        # GME's code calls the text decoder with position_ids=None: sequential positions for all
        # tokens, image tokens included, never M-RoPE (right padding keeps them 0..n-1 per row).
        return self.run_decoder(inputs, sequential_positions(inputs["input_ids"]))

    def pool(self, hidden: torch.Tensor, inputs: Any) -> torch.Tensor:
        return last_token(hidden, inputs["attention_mask"])


class OpsMmEmbedder(_SystemPromptEmbedder):
    padding_side: ClassVar[str] = "left"
    image_preparation: ClassVar[str] = "PIL resize to multiples of 28 within the pixel bounds (fetch_image)"
    pixel_defaults: ClassVar[tuple[int, int]] = (OPS_MM_MIN_PIXELS, OPS_MM_MAX_PIXELS)
    default_instructions: ClassVar[dict[str, str]] = {
        "text": DEFAULT_INSTRUCTION,
        "image": DEFAULT_INSTRUCTION,
    }

    def preprocess_image(self, image: Image.Image) -> Any:
        return fetch_resize(image, *pixel_bounds(self.spec, *self.pixel_defaults))

    def text_kwargs(self) -> dict[str, Any]:
        return {"truncation": True}

    def image_kwargs(self) -> dict[str, Any]:
        return {"truncation": True}

    def hidden_states(self, inputs: Any) -> torch.Tensor:
        return self.run_decoder(inputs, self.mrope_positions(inputs))

    def mrope_positions(self, inputs: Any) -> torch.Tensor:
        """Positions as transformers 4.57's Qwen2-VL forward computes them when none are given:
        M-RoPE over the real tokens of each row when images are present, else 0..n-1 counted over
        the real tokens (pad slots get 1)."""
        mask = inputs["attention_mask"]
        if inputs.get("image_grid_thw") is not None:
            positions, _ = self.decoder().get_rope_index(
                inputs["input_ids"],
                mm_token_type_ids=inputs["mm_token_type_ids"],
                image_grid_thw=inputs["image_grid_thw"],
                attention_mask=mask,
            )
            return positions
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)
        return positions.unsqueeze(0).expand(3, -1, -1)

    def pool(self, hidden: torch.Tensor, inputs: Any) -> torch.Tensor:
        # The last column: under left padding, every row's final <|endoftext|>.
        return last_column(hidden)


# -- VLM2Vec / B3 --------------------------------------------------------------------------------

_BASE_PATTERNS = (["*.json", "model*.safetensors"], ["*.json", "pytorch_model*.bin"])
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_FULL_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


class Vlm2VecEmbedder(_Qwen2VlEmbedder):
    """VLM2Vec-V2.0 and B3++.

    Expected repository layouts (neither hub repository could be read from here; the reference
    code requires the first, VLM2Vec's other Qwen2-VL repositories have it):
    - adapter: `adapter_config.json` + `adapter_model.safetensors` (or `.bin`), `config.json` and the
      processor/tokenizer files; the base weights are those of `base_model_name_or_path` in
      adapter_config (Qwen/Qwen2-VL-2B-Instruct), or of the registry option `base_model` (a hub repo
      id, `hf-hub:<repo>` or `local-dir:<folder>`) at option `base_revision`. As in the reference
      (transformers' own adapter loading), full weights beside an adapter are not used.
    - full weights (an adapter already merged, "LoRA baked"): config, `model*.safetensors` and the
      processor files, loaded as they are. The reference code itself would refuse this layout.
    """

    padding_side: ClassVar[str] = "right"
    pixel_defaults: ClassVar[tuple[int, int]] = (VLM2VEC_MIN_PIXELS, VLM2VEC_MAX_PIXELS)
    image_preparation: ClassVar[str] = "images under 28 px on a side resized to 56 x 56 (VLM2Vec's rule)"
    accepts_instruction = False

    def __init__(self, spec: ModelSpec, model: Any, processor: Any, options: RuntimeOptions) -> None:
        # VLM2Vec pads with the tokenizer as loaded from the repository, whatever side that is; a
        # registry option `padding_side` may override it. The base class forces its own side on the
        # tokenizer, which only `count_tokens` uses here.
        self.pad_side = str(spec.options.get("padding_side", processor.tokenizer.padding_side))
        super().__init__(spec, model, processor, options)

    # -- loading -------------------------------------------------------------------------------

    @classmethod
    def load_weights(
        cls, model_class: Any, folder: Path, dtype: torch.dtype, spec: ModelSpec, options: RuntimeOptions
    ) -> Any:
        if not (folder / "adapter_config.json").is_file():
            return super().load_weights(model_class, folder, dtype, spec, options)
        base_folder = cls.base_folder(folder, spec, options)
        if base_folder != folder and any((folder / name).is_file() for name in _FULL_WEIGHTS):
            log.warning(
                "model %r: %s holds full weights beside its adapter; as the reference does, the adapter is "
                "applied to the base model %s and those weights are not used",
                spec.name, folder, base_folder,
            )  # fmt: skip
        from transformers import AutoConfig

        # The repository's own config.json, as VLM2Vec passes AutoConfig(model_name) to the base load.
        config_folder = folder if (folder / "config.json").is_file() else base_folder
        config = AutoConfig.from_pretrained(config_folder, local_files_only=True)
        # Merge in fp32, then cast: the unmerged adapter's function without a bf16 rounding of W + BA.
        model, info = model_class.from_pretrained(
            base_folder,
            config=config,
            dtype=torch.float32,
            output_loading_info=True,
            local_files_only=True,
            attn_implementation="sdpa",
        )
        refuse_missing(spec, base_folder, info)
        return merge_adapter(model, folder, spec).to(dtype)

    @classmethod
    def base_folder(cls, folder: Path, spec: ModelSpec, options: RuntimeOptions) -> Path:
        """Where the adapter's base weights are: the registry's `base_model`, else adapter_config's."""
        configured = spec.options.get("base_model")
        if configured is None:
            configured = json.loads((folder / "adapter_config.json").read_text()).get(
                "base_model_name_or_path"
            )
        if not configured:
            raise ModelLoadFailed(
                f"model {spec.name!r}: {folder} holds a LoRA adapter naming no base model; set option "
                "`base_model` (hub repo id or local-dir:<folder>)"
            )
        reference = str(configured)
        if reference.startswith("local-dir:"):
            return Path(reference.removeprefix("local-dir:"))
        if Path(reference).is_dir():
            return Path(reference)
        revision = spec.options.get("base_revision")
        return hub_snapshot(
            reference.removeprefix("hf-hub:"),
            None if revision is None else str(revision),
            options,
            _BASE_PATTERNS,
            what=f"base model of {spec.name!r}",
        )

    # -- prompts -------------------------------------------------------------------------------

    @classmethod
    def prompt_card(cls, spec: ModelSpec) -> dict[str, str]:
        return {"image_prompt": VLM2VEC_IMAGE_PROMPT, "text_prompt": "{text}"}

    def text_prompts(self, texts: Sequence[str], options: PromptOptions) -> list[str]:
        return list(texts)

    def image_prompts(self, count: int, options: PromptOptions) -> list[str]:
        return [VLM2VEC_IMAGE_PROMPT] * count

    # -- embedding -----------------------------------------------------------------------------

    def preprocess_image(self, image: Image.Image) -> Any:
        image = image.convert("RGB")
        if image.size[0] < VLM2VEC_SMALLEST_SIDE or image.size[1] < VLM2VEC_SMALLEST_SIDE:
            image = image.resize(VLM2VEC_SMALL_IMAGE_SIZE)  # VLM2Vec's rule for tiny images
        return image

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str], options: PromptOptions = DEFAULT_PROMPT) -> np.ndarray:
        prompts = self.text_prompts(list(texts), options)
        inputs = self.batch([self.processor(text=[prompt], truncation=True) for prompt in prompts])
        return self.rows(self.pool(self.run(inputs), inputs))

    @torch.inference_mode()
    def embed_prepared(self, items: Sequence[Any], options: PromptOptions = DEFAULT_PROMPT) -> np.ndarray:
        prompts = self.image_prompts(len(items), options)
        encoded = [
            self.processor(text=[prompt], images=[item], return_tensors="pt")
            for prompt, item in zip(prompts, items, strict=True)
        ]
        inputs = self.batch(encoded)
        return self.rows(self.pool(self.run(inputs), inputs))

    def batch(self, encoded: list[Any]) -> dict[str, torch.Tensor]:
        """Items processed alone, their token ids padded together by the tokenizer and their
        pixels concatenated, as VLM2Vec's Qwen2-VL collator does."""
        ids = [[int(t) for t in torch.as_tensor(item["input_ids"]).reshape(-1)] for item in encoded]
        side, self.tokenizer.padding_side = self.tokenizer.padding_side, self.pad_side
        try:
            padded = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt")
        finally:
            self.tokenizer.padding_side = side
        inputs = {"input_ids": padded["input_ids"].long(), "attention_mask": padded["attention_mask"].long()}
        if "pixel_values" in encoded[0]:
            inputs["pixel_values"] = torch.cat([torch.as_tensor(item["pixel_values"]) for item in encoded])
            inputs["image_grid_thw"] = torch.cat(
                [torch.as_tensor(item["image_grid_thw"]) for item in encoded]
            )
        return inputs

    def run(self, inputs: Any) -> torch.Tensor:
        inputs = {key: value.to(self._device) for key, value in inputs.items()}
        with self.autocast():
            return self.hidden_states(inputs)

    def hidden_states(self, inputs: Any) -> torch.Tensor:
        # Sequential positions over the padded length, pads included: what VLM2Vec's cached
        # rope_deltas give every forward call after a process's first (see the module docstring).
        return self.run_decoder(inputs, sequential_positions(inputs["input_ids"]))

    def pool(self, hidden: torch.Tensor, inputs: Any) -> torch.Tensor:
        return last_token(hidden, inputs["attention_mask"])


# -- LoRA ----------------------------------------------------------------------------------------

# Adapter keys saved from the Qwen2-VL layout of transformers < 4.52 (VLM2Vec's vendored copy), where
# `model.` was the text decoder and `visual.` sat beside it; transformers 5 nests both under `model.`.
_OLD_DECODER = re.compile(r"^base_model\.model\.model\.(?!language_model\.|visual\.)")
_OLD_VISUAL = re.compile(r"^base_model\.model\.visual\.")


def current_layout(key: str) -> str:
    key = _OLD_DECODER.sub("base_model.model.model.language_model.", key)
    return _OLD_VISUAL.sub("base_model.model.model.visual.", key)


def adapter_weights(adapter_dir: Path, spec: ModelSpec) -> dict[str, torch.Tensor]:
    for name in _ADAPTER_WEIGHTS:
        path = adapter_dir / name
        if path.is_file():
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                return load_file(path)
            return torch.load(path, map_location="cpu", weights_only=True)
    raise ModelLoadFailed(
        f"model {spec.name!r}: {adapter_dir} has adapter_config.json but no adapter weights"
    )


def merge_adapter(model: Any, adapter_dir: Path, spec: ModelSpec) -> Any:
    """Apply a LoRA/DoRA adapter saved for either Qwen2-VL module layout, and merge it."""
    from peft import LoraConfig

    config = LoraConfig.from_pretrained(str(adapter_dir))
    weights = {current_layout(key): value for key, value in adapter_weights(adapter_dir, spec).items()}
    return merge_adapter_state(model, config, weights, spec)

"""transformers' own vision(-language) encoders: CLIP (BGE-VL), AIMv2, AIMv2 vision, DINOv3.

One adapter, four families: they differ only in the model class and in how a batch becomes one
vector per item (projected pooled output, mean of tokens, CLS token). Weights, image processor and
tokenizer are read from the model folder (a local folder or a pinned hub snapshot) with the
library's classes, never hub-side remote code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from marsbench.encoder.adapters.aimv2_layout import ensure_native_layout
from marsbench.encoder.adapters.base import (
    DEFAULT_PROMPT,
    PromptOptions,
    RuntimeOptions,
    TorchEmbedder,
    check_vocabulary,
    normalized_rows,
)
from marsbench.encoder.adapters.hub import converted_dir, model_folder
from marsbench.encoder.adapters.image_processing import describe_image_processor, load_image_processor
from marsbench.encoder.errors import ModelLoadFailed
from marsbench.encoder.registry import ModelSpec
from marsbench.schemas.common import Modality

log = logging.getLogger(__name__)

# Model files of a transformers repository; safetensors first so one copy of the weights is fetched.
_META = ["*.json", "*.txt", "*.model", "*.tiktoken"]
HUB_PATTERNS = ([*_META, "model*.safetensors"], [*_META, "pytorch_model*.bin"])

ImageFeatures = Callable[[Any, torch.Tensor, dict[str, Any]], torch.Tensor]
TextFeatures = Callable[[Any, dict[str, torch.Tensor]], torch.Tensor]


def _tensor(output: Any) -> torch.Tensor:
    """transformers 5 returns model outputs from get_*_features; older versions a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _projected_image(model: Any, pixels: torch.Tensor, options: dict[str, Any]) -> torch.Tensor:
    return _tensor(model.get_image_features(pixel_values=pixels))


def _projected_text(model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return _tensor(model.get_text_features(**inputs))


def _pooled_tokens(model: Any, pixels: torch.Tensor, options: dict[str, Any]) -> torch.Tensor:
    hidden = model(pixel_values=pixels).last_hidden_state
    pooling = options.get("pooling", "cls")
    if pooling == "mean":  # every token, as the reference's AIMv2 and DINOv3 'mean' pooling
        return hidden.mean(dim=1)
    if pooling == "cls":
        return hidden[:, 0]
    raise ModelLoadFailed(f"unknown pooling {pooling!r}; use 'cls' or 'mean'")


@dataclass(frozen=True)
class TowerFamily:
    """What distinguishes one transformers family from another."""

    model_class: str
    image_features: ImageFeatures
    text_features: TextFeatures | None = None
    text_inputs: tuple[str, ...] = ("input_ids", "attention_mask")
    attn_implementation: str | dict[str, str] | None = None
    # Checkpoints in Apple's original AIMv2 layout are converted once into transformers' layout.
    apple_layout: bool = False
    vision_only: bool = False


TOWER_FAMILIES: dict[str, TowerFamily] = {
    "hf_clip": TowerFamily("CLIPModel", _projected_image, _projected_text),
    # AIMv2's text tower is causal (Apple's config: is_causal). transformers 5's Aimv2TextModel is
    # causal only with eager attention and an attention mask: its sdpa path attends both ways.
    "hf_aimv2": TowerFamily(
        "Aimv2Model",
        _projected_image,
        _projected_text,
        attn_implementation={"text_config": "eager", "vision_config": "sdpa", "": "sdpa"},
        apple_layout=True,
    ),
    "hf_aimv2_vision": TowerFamily("Aimv2VisionModel", _pooled_tokens, apple_layout=True, vision_only=True),
    "hf_dinov3": TowerFamily("DINOv3ViTModel", _pooled_tokens),
}


class TransformersTowers(TorchEmbedder):
    """One transformers encoder in inference mode, with its own processor and tokenizer."""

    def __init__(
        self,
        spec: ModelSpec,
        family: TowerFamily,
        model: Any,
        image_processor: Any,
        tokenizer: Any | None,
        options: RuntimeOptions,
    ) -> None:
        super().__init__(spec, model, options)
        self._family = family
        self._image_processor = image_processor
        self._tokenizer = tokenizer
        self.image_size = _processor_size(image_processor)
        self.preprocessing = describe_image_processor(image_processor)
        self._max_length = _text_max_length(model, tokenizer)
        self.dimension = int(self._image_batch(self._blank()).shape[-1])

    @classmethod
    def load(cls, spec: ModelSpec, options: RuntimeOptions) -> TransformersTowers:
        import transformers

        family = TOWER_FAMILIES[spec.family]
        folder = model_folder(spec, options, HUB_PATTERNS)
        if family.apple_layout:
            folder = ensure_native_layout(
                folder, vision_only=family.vision_only, work_dir=converted_dir(options)
            )
        model_class = getattr(transformers, family.model_class)
        extra = {"attn_implementation": family.attn_implementation} if family.attn_implementation else {}
        try:
            model, info = model_class.from_pretrained(
                folder, dtype=torch.float32, output_loading_info=True, local_files_only=True, **extra
            )
            image_processor = load_image_processor(folder, spec)
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise ModelLoadFailed(
                f"cannot load {family.model_class} {spec.name!r} from {folder}: {exc}"
            ) from exc
        _refuse_partial_weights(spec, folder, info)
        tokenizer = None
        if Modality.TEXT in spec.modalities:
            if family.text_features is None:
                raise ModelLoadFailed(f"model {spec.name!r}: family {spec.family} has no text tower")
            tokenizer = _load_tokenizer(spec, folder, model)
        model.eval().to(options.torch_device())
        return cls(spec, family, model, image_processor, tokenizer, options)

    def preprocess_image(self, image: Image.Image) -> torch.Tensor:
        pixels: torch.Tensor = self._image_processor(images=image, return_tensors="pt")["pixel_values"][0]
        return pixels

    @torch.inference_mode()
    def embed_images(self, pixels: torch.Tensor) -> np.ndarray:
        return normalized_rows(self._image_batch(pixels))

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str], options: PromptOptions = DEFAULT_PROMPT) -> np.ndarray:
        if self._tokenizer is None or self._family.text_features is None:
            raise ModelLoadFailed(f"model {self.spec.name!r} has no text tower")
        encoded = self._encode(texts)
        inputs = {key: encoded[key].to(self._device) for key in self._family.text_inputs}
        with self.autocast():
            features = self._family.text_features(self.module, inputs)
        return normalized_rows(features)

    def count_tokens(self, texts: Sequence[str]) -> int:
        if self._tokenizer is None:
            return 0
        return int(self._encode(texts)["attention_mask"].sum().item()) if texts else 0

    def _encode(self, texts: Sequence[str]) -> Any:
        assert self._tokenizer is not None
        return self._tokenizer(
            list(texts), padding=True, truncation=True, max_length=self._max_length, return_tensors="pt"
        )

    def _image_batch(self, pixels: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), self.autocast():
            return self._family.image_features(self.module, pixels.to(self._device), self.spec.options)

    def _blank(self) -> torch.Tensor:
        size = self.image_size or 224
        return torch.zeros(1, 3, size, size)


def _refuse_partial_weights(spec: ModelSpec, folder: Any, info: dict[str, list[Any]]) -> None:
    """A folder whose weights do not fit the class would leave layers at random initial values."""
    missing = list(info.get("missing_keys", []))
    mismatched = list(info.get("mismatched_keys", []))
    if missing or mismatched:
        raise ModelLoadFailed(
            f"model {spec.name!r}: the weights in {folder} do not fit transformers' class "
            f"({len(missing)} missing, {len(mismatched)} mismatched, e.g. {(missing + mismatched)[:4]}); "
            "the checkpoint may be in another layout (e.g. a remote-code layout): convert it with "
            "transformers' conversion script for the model, or pin a revision in transformers' layout"
        )
    unexpected = list(info.get("unexpected_keys", []))
    if unexpected:
        log.warning(
            "model %s: %d unused weights in %s, e.g. %s", spec.name, len(unexpected), folder, unexpected[:4]
        )


def _load_tokenizer(spec: ModelSpec, folder: Any, model: Any) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadFailed(f"model {spec.name!r}: cannot load the tokenizer in {folder}: {exc}") from exc
    text_config = getattr(model.config, "text_config", model.config)
    check_vocabulary(
        len(tokenizer), getattr(text_config, "vocab_size", None), what=f"tokenizer of {spec.name!r}"
    )
    return tokenizer


def _text_max_length(model: Any, tokenizer: Any | None) -> int | None:
    """Truncate where the text tower's position table ends (the reference does so for BGE-VL)."""
    if tokenizer is None:
        return None
    text_config = getattr(model.config, "text_config", None)
    positions = getattr(text_config, "max_position_embeddings", None)
    limit = getattr(tokenizer, "model_max_length", None)
    candidates = [n for n in (positions, limit) if isinstance(n, int) and 0 < n < 1_000_000]
    return min(candidates) if candidates else None


def _processor_size(processor: Any) -> int | None:
    for attr in ("crop_size", "size"):
        size = getattr(processor, attr, None)
        if isinstance(size, dict):
            for key in ("height", "shortest_edge"):
                if isinstance(size.get(key), int):
                    return int(size[key])
        elif isinstance(size, int):
            return size
        elif size is not None:
            height = getattr(size, "height", None) or getattr(size, "shortest_edge", None)
            if isinstance(height, int):
                return height
    return None

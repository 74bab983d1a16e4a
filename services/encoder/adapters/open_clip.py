"""The open_clip family: any open_clip architecture, with its own preprocessing and tokenizer."""

from __future__ import annotations

import gc
import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
from PIL import Image

from marsbench.encoder.adapters.base import RuntimeOptions, autocast_for, normalized_rows
from marsbench.encoder.core.errors import ModelLoadFailed
from marsbench.encoder.core.registry import WEIGHT_SUFFIXES, ModelSpec

log = logging.getLogger(__name__)


class OpenClipModel:
    """Image and text towers of one open_clip model, in inference mode."""

    def __init__(
        self,
        spec: ModelSpec,
        model: Any,
        preprocess: Any,
        tokenizer: Any,
        options: RuntimeOptions,
    ) -> None:
        self.spec = spec
        self._model = model
        self._preprocess = preprocess
        self._tokenizer = tokenizer
        self._device = options.torch_device()
        self._precision = options.gpu_precision
        self.modalities = spec.modalities
        self.dimension = _embedding_dim(model)
        self.image_size = _image_size(model)

    @classmethod
    def load(cls, spec: ModelSpec, options: RuntimeOptions) -> OpenClipModel:
        device = options.torch_device()
        _check_weights_exist(spec)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                spec.source,
                pretrained=spec.pretrained,
                device="cpu",
                force_quick_gelu=spec.force_quick_gelu,
                force_image_size=spec.image_size,
                cache_dir=options.cache_dir,
            )
        except (RuntimeError, FileNotFoundError, ValueError, OSError) as exc:
            raise ModelLoadFailed(f"cannot load open_clip model {spec.name!r}: {exc}") from exc
        if spec.checkpoint is not None:
            _load_checkpoint(model, spec.checkpoint, trust=options.trust_checkpoints)
        model.eval().to(device)
        tokenizer = open_clip.get_tokenizer(spec.source, cache_dir=options.cache_dir)
        return cls(spec, model, preprocess, tokenizer, options)

    def preprocess_image(self, image: Image.Image) -> torch.Tensor:
        tensor: torch.Tensor = self._preprocess(image)
        return tensor

    @torch.inference_mode()
    def embed_images(self, pixels: torch.Tensor) -> np.ndarray:
        with autocast_for(self._device, self._precision):
            features = self._model.encode_image(pixels.to(self._device, non_blocking=True))
        return normalized_rows(features)

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        tokens = self._tokenizer(list(texts)).to(self._device)
        with autocast_for(self._device, self._precision):
            features = self._model.encode_text(tokens)
        return normalized_rows(features)

    def count_tokens(self, texts: Sequence[str]) -> int:
        tokens = self._tokenizer(list(texts))
        return int((tokens != 0).sum().item())

    def close(self) -> None:
        self._model = None
        gc.collect()
        if self._device.type == "cuda":
            torch.cuda.empty_cache()


def _check_weights_exist(spec: ModelSpec) -> None:
    """open_clip silently initialises random weights when a folder has none; refuse instead."""
    if spec.source.startswith("local-dir:"):
        folder = Path(spec.source.removeprefix("local-dir:"))
        if not folder.is_dir() or not any(p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir()):
            raise ModelLoadFailed(
                f"model folder {folder} holds no weights file ({', '.join(WEIGHT_SUFFIXES)})"
            )
    elif spec.pretrained is None and spec.checkpoint is None and not spec.source.startswith("hf-hub:"):
        log.warning("model %s has no pretrained weights or checkpoint: serving random weights", spec.name)


def _load_checkpoint(model: Any, path: Path, *, trust: bool) -> None:
    """Load a fine-tuned checkpoint with open_clip's own loader (prefixes, resizes, conversions)."""
    if not path.is_file():
        raise ModelLoadFailed(f"checkpoint file {path} does not exist")
    try:
        incompatible = open_clip.load_checkpoint(model, str(path), strict=False, weights_only=not trust)
    except pickle.UnpicklingError as exc:
        raise ModelLoadFailed(
            f"checkpoint {path} holds pickled objects besides tensors; if you trust the file, "
            "set MARSBENCH_ENCODER_TRUST_CHECKPOINTS=1 and retry"
        ) from exc
    except (RuntimeError, KeyError, ValueError, OSError) as exc:
        raise ModelLoadFailed(f"checkpoint {path} does not fit the architecture: {exc}") from exc
    missing = list(getattr(incompatible, "missing_keys", []) or [])
    unexpected = list(getattr(incompatible, "unexpected_keys", []) or [])
    if missing:
        # A checkpoint that leaves weights at their initial values would give silently wrong numbers.
        raise ModelLoadFailed(
            f"checkpoint {path} lacks {len(missing)} weights of the architecture, e.g. {missing[:5]}"
        )
    if unexpected:
        log.warning("checkpoint %s has %d unused keys, e.g. %s", path, len(unexpected), unexpected[:5])


def _embedding_dim(model: Any) -> int:
    """Probe with one blank image: exact for every tower type, and it warms the model up."""
    size = _image_size(model) or 224
    device = next(model.parameters()).device
    with torch.inference_mode():
        return int(model.encode_image(torch.zeros(1, 3, size, size, device=device)).shape[-1])


def _image_size(model: Any) -> int | None:
    size = getattr(getattr(model, "visual", None), "image_size", None)
    if isinstance(size, tuple | list):
        return int(size[0])
    return int(size) if isinstance(size, int) else None

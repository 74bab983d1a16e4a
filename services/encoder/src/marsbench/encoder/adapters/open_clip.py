"""The open_clip family: any open_clip architecture, with its own preprocessing and tokenizer."""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import open_clip
import torch
from PIL import Image

from marsbench.encoder.adapters.base import (
    DEFAULT_PROMPT,
    PromptOptions,
    RuntimeOptions,
    TorchEmbedder,
    check_vocabulary,
    normalized_rows,
)
from marsbench.encoder.adapters.hub import hub_snapshot, model_folder
from marsbench.encoder.adapters.image_processing import describe_transforms
from marsbench.encoder.errors import ModelLoadFailed, ModelUnusable
from marsbench.encoder.registry import RANDOM_TAG, ModelSpec

log = logging.getLogger(__name__)

Preprocess = Callable[[Image.Image], torch.Tensor]
Tokenizer = Callable[[list[str]], torch.Tensor]


@runtime_checkable
class ClipTowers(Protocol):
    """What marsbench calls on an open_clip model (CLIP, CustomTextCLIP, ...): open_clip ships no
    types, and a `torch.nn.Module` types every attribute it does not declare as `Tensor | Module`."""

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor: ...

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor: ...


def clip_towers(module: torch.nn.Module) -> ClipTowers:
    """`module` as the open_clip model it is, checked: the towers' calls are then typed."""
    if not isinstance(module, ClipTowers):
        raise TypeError(f"{type(module).__name__} is not an open_clip model (no encode_image/encode_text)")
    return module


class OpenClipModel(TorchEmbedder):
    """Image and text towers of one open_clip model, in inference mode."""

    def __init__(
        self,
        spec: ModelSpec,
        model: Any,
        preprocess: Any,
        tokenizer: Any,
        options: RuntimeOptions,
    ) -> None:
        super().__init__(spec, model, options)
        self._preprocess: Preprocess = preprocess
        self._tokenizer: Tokenizer = tokenizer
        self.dimension = _embedding_dim(model)
        self.image_size = _image_size(model)
        self._tensor_transform = tensor_transform(getattr(model.visual, "preprocess_cfg", None) or {})
        self.tensor_preprocessing = self._tensor_transform is not None
        self.preprocessing = describe_transforms(preprocess, path="open_clip transforms on PIL images")
        if self._tensor_transform is not None:
            self.tensor_preprocessing_card = describe_transforms(
                self._tensor_transform,
                path="torchvision v2 on uint8 tensors (MARSBENCH_ENCODER_IMAGE_PREPROCESSING=tensor)",
            )

    @classmethod
    def check(cls, spec: ModelSpec, options: RuntimeOptions) -> None:
        """What can be known to fail before loading, read cheaply (no weights are built): the engine
        runs it before making room, so a load that cannot succeed unloads nothing."""
        _check_architecture(spec)
        if spec.local_folder() is None and spec.hub_repo() is None:
            _check_weights_named(spec)
        if spec.checkpoint is not None:
            trusted = options.trust_checkpoints and not spec.from_request
            if not trusted:  # a trusted file is unpickled once, when it loads, not twice
                _read_state_keys(spec.checkpoint, from_request=spec.from_request)
            elif not spec.checkpoint.is_file():
                raise ModelUnusable(f"checkpoint file {spec.checkpoint} does not exist")

    @classmethod
    def load(cls, spec: ModelSpec, options: RuntimeOptions) -> OpenClipModel:
        device = options.torch_device()
        _check_architecture(spec)
        name, pretrained, preprocess_kwargs = _weights_source(spec, options)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name,
                pretrained=pretrained,
                device="cpu",
                force_quick_gelu=spec.force_quick_gelu,
                force_image_size=spec.image_size,
                cache_dir=options.cache_dir,
                **preprocess_kwargs,
            )
        except (MemoryError, torch.OutOfMemoryError) as exc:  # may pass once memory frees up: 503
            raise ModelLoadFailed(f"out of memory loading open_clip model {spec.name!r}: {exc}") from exc
        except Exception as exc:  # a config or weights file that does not fit: retrying cannot help
            raise ModelUnusable(f"cannot load open_clip model {spec.name!r}: {exc}") from exc
        if spec.checkpoint is not None:
            trusted = options.trust_checkpoints and not spec.from_request
            _load_checkpoint(model, spec.checkpoint, trust=trusted, from_request=spec.from_request)
        model.eval().to(device)
        tokenizer = _tokenizer(spec, name, options)
        return cls(spec, model, preprocess, tokenizer, options)

    @property
    def preprocess(self) -> Preprocess:
        """open_clip's evaluation transform for this model (PIL image to input tensor)."""
        return self._preprocess

    @property
    def tokenizer(self) -> Tokenizer:
        """open_clip's tokenizer for this model (texts to a (N, context) tensor of token ids)."""
        return self._tokenizer

    @property
    def towers(self) -> ClipTowers:
        return clip_towers(self.module)

    def preprocess_image(self, image: Image.Image) -> torch.Tensor:
        return self._preprocess(image)

    def preprocess_tensor(self, pixels: torch.Tensor) -> torch.Tensor:
        if self._tensor_transform is None:
            raise NotImplementedError(f"model {self.spec.name!r} has no tensor preprocessing")
        return self._tensor_transform(pixels)

    @torch.inference_mode()
    def embed_images(self, pixels: torch.Tensor) -> np.ndarray:
        with self.autocast():
            features = self.towers.encode_image(pixels.to(self._device, non_blocking=True))
        return normalized_rows(features)

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str], options: PromptOptions = DEFAULT_PROMPT) -> np.ndarray:
        tokens = self._tokenizer(list(texts)).to(self._device)
        with self.autocast():
            features = self.towers.encode_text(tokens)
        return normalized_rows(features)

    def count_tokens(self, texts: Sequence[str]) -> int:
        tokens = self._tokenizer(list(texts))
        return int((tokens != 0).sum().item())


# Files an open_clip hub repository needs; safetensors first so one copy of the weights is fetched.
_CONFIG_FILES = ["open_clip_config.json", "*.txt", "tokenizer*", "special_tokens_map.json", "spiece.model"]
_HUB_PATTERNS = (
    [*_CONFIG_FILES, "open_clip_model.safetensors"],
    [*_CONFIG_FILES, "open_clip_pytorch_model.bin"],
)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model", "vocab.json")


def _weights_source(spec: ModelSpec, options: RuntimeOptions) -> tuple[str, str | None, dict[str, Any]]:
    """(model name, pretrained, preprocessing overrides) for open_clip's factory.

    Hub repositories and pretrained tags are fetched at the spec's pinned revision and handed to
    open_clip as local files, so that what runs is exactly the pinned snapshot.
    """
    if spec.local_folder() is not None or spec.hub_repo() is not None:
        folder = model_folder(spec, options, _HUB_PATTERNS)
        return f"local-dir:{folder}", None, {}
    if spec.pretrained is None:
        _check_weights_named(spec)
        if spec.checkpoint is None:
            log.warning("model %s: serving random weights, as asked (random_weights)", spec.name)
        return spec.source, None, {}
    tag = open_clip.get_pretrained_cfg(spec.source, spec.pretrained)
    if not tag or spec.revision is None or not tag.get("hf_hub"):
        return spec.source, spec.pretrained, {}
    repo, filename = os.path.split(tag["hf_hub"])
    try:
        path = open_clip.download_pretrained_from_hf(
            repo, filename=filename or None, revision=spec.revision, cache_dir=options.cache_dir
        )
    except Exception as exc:  # huggingface_hub raises many types; all mean "not available"
        raise ModelLoadFailed(
            f"model {spec.name!r}: cannot fetch {repo}@{spec.revision} (pretrained tag "
            f"{spec.pretrained!r}): {exc}"
        ) from exc
    # A weights file carries no preprocessing: take the tag's, as open_clip would.
    preprocess = {
        "image_mean": tag.get("mean"),
        "image_std": tag.get("std"),
        "image_interpolation": tag.get("interpolation"),
        "image_resize_mode": tag.get("resize_mode"),
    }
    return spec.source, str(path), {k: v for k, v in preprocess.items() if v is not None}


def _tokenizer(spec: ModelSpec, name: str, options: RuntimeOptions) -> Any:
    """open_clip's tokenizer for the model; a hub snapshot whose config names a tokenizer living in
    another repository (timm's SigLIP repos do) gets that repository's files as well."""
    if name.startswith("local-dir:"):
        folder = Path(name.removeprefix("local-dir:"))
        text_cfg = json.loads((folder / "open_clip_config.json").read_text())["model_cfg"].get("text_cfg", {})
        hf_name = text_cfg.get("hf_tokenizer_name")
        if hf_name and not any((folder / f).is_file() for f in _TOKENIZER_FILES):
            revision = spec.options.get("tokenizer_revision")
            tok_folder = hub_snapshot(
                hf_name,
                str(revision) if revision else None,
                options,
                [["tokenizer*", "special_tokens_map.json", "spiece.model", "*.txt", "vocab*", "config.json"]],
                what=f"tokenizer of {spec.name!r}",
                require_weights=False,
            )
            tokenizer = open_clip.tokenizer.HFTokenizer(
                str(tok_folder),
                context_length=text_cfg.get("context_length", open_clip.tokenizer.DEFAULT_CONTEXT_LENGTH),
                tokenizer_mode=text_cfg.get("tokenizer_mode"),
                **text_cfg.get("tokenizer_kwargs", {}),
            )
        else:
            tokenizer = open_clip.get_tokenizer(name, cache_dir=options.cache_dir)
    else:
        tokenizer = open_clip.get_tokenizer(name, cache_dir=options.cache_dir)
    inner = getattr(tokenizer, "tokenizer", None)
    if inner is not None and hasattr(inner, "__len__"):
        check_vocabulary(len(inner), None, what=f"tokenizer of {spec.name!r}")
    return tokenizer


def _check_architecture(spec: ModelSpec) -> None:
    if spec.local_folder() is not None or spec.hub_repo() is not None:
        folder = spec.local_folder()
        if folder is not None and not (folder / "open_clip_config.json").is_file():
            what = "does not exist" if not folder.is_dir() else "holds no open_clip_config.json"
            raise ModelUnusable(f"model {spec.name!r}: model folder {folder} {what}")
        return
    if open_clip.get_model_config(spec.source) is None:
        raise ModelUnusable(
            f"model {spec.name!r}: unknown open_clip architecture {spec.source!r}; open_clip.list_models() "
            "names the known ones (e.g. ViT-B-32, ViT-L-14-quickgelu), or use open_clip:local-dir:<folder>"
        )
    pretrained = spec.pretrained
    if (
        pretrained is not None
        and not Path(pretrained).is_file()
        and not open_clip.get_pretrained_cfg(spec.source, pretrained)
    ):
        tags = open_clip.list_pretrained_tags_by_model(spec.source)
        raise ModelUnusable(
            f"model {spec.name!r}: unknown pretrained tag {pretrained!r} of {spec.source}; known tags: "
            f"{', '.join(tags) or 'none'}"
        )


def _check_weights_named(spec: ModelSpec) -> None:
    """An architecture alone has random weights: served only when asked for by name, since its
    vectors look like any others and would give silently meaningless results."""
    if spec.pretrained is None and spec.checkpoint is None and not spec.random_weights:
        raise ModelUnusable(
            f"model {spec.name!r} names no weights (no pretrained tag, no checkpoint): name them, "
            f"e.g. open_clip:{spec.source}:<tag> or <model>@/path/to/checkpoint.pt; to serve random "
            f"weights on purpose ask for open_clip:{spec.source}:{RANDOM_TAG} (or set random_weights = "
            "true in its registry entry)"
        )


def _read_state_keys(path: Path, *, from_request: bool) -> list[str]:
    """The checkpoint's weight names, read as weights only (memory-mapped: nothing is copied), so that
    a file holding no weights (an empty dict made open_clip raise StopIteration) or no weights file
    at all is refused before the engine makes room for it."""
    if not path.is_file():
        raise ModelUnusable(f"checkpoint file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                return list(handle.keys())
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # the legacy format
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            raise ModelUnusable(_pickled_message(path, from_request=from_request)) from None
        raise ModelUnusable(f"checkpoint {path} is not a weights file torch can read") from None
    except Exception as exc:  # the unpickler fails in many ways on other files (IndexError, EOFError...)
        raise ModelUnusable(
            f"checkpoint {path} is not a weights file torch can read ({type(exc).__name__}: {exc})"
        ) from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state:
        raise ModelUnusable(f"checkpoint {path} holds no weights (its state dict is empty or missing)")
    return [str(key) for key in state]


def _pickled_message(path: Path, *, from_request: bool) -> str:
    if from_request:
        return (
            f"checkpoint {path} holds pickled objects besides tensors; a checkpoint named in a request is "
            "only ever read as weights: save its state dict alone (torch.save({'state_dict': ...})) or "
            "as safetensors, or have the operator register it in a registry file"
        )
    return (
        f"checkpoint {path} holds pickled objects besides tensors; if you trust the file, set "
        "MARSBENCH_ENCODER_TRUST_CHECKPOINTS=1 and retry"
    )


def _load_checkpoint(model: Any, path: Path, *, trust: bool, from_request: bool = False) -> None:
    """Load a fine-tuned checkpoint with open_clip's own loader (prefixes, resizes, conversions)."""
    if not path.is_file():
        raise ModelUnusable(f"checkpoint file {path} does not exist")
    try:
        incompatible = open_clip.load_checkpoint(model, str(path), strict=False, weights_only=not trust)
    except StopIteration:  # open_clip's next(iter(state_dict)) on an empty dict
        raise ModelUnusable(
            f"checkpoint {path} holds no weights (its state dict is empty or missing)"
        ) from None
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            raise ModelUnusable(_pickled_message(path, from_request=from_request)) from exc
        raise ModelUnusable(f"checkpoint {path} is not a weights file torch can read: {exc}") from exc
    except (RuntimeError, KeyError, ValueError) as exc:
        raise ModelUnusable(f"checkpoint {path} does not fit the architecture: {exc}") from exc
    except Exception as exc:
        raise ModelUnusable(
            f"checkpoint {path} is not a weights file torch can read ({type(exc).__name__}: {exc})"
        ) from exc
    missing = list(getattr(incompatible, "missing_keys", []) or [])
    unexpected = list(getattr(incompatible, "unexpected_keys", []) or [])
    if missing:
        # A checkpoint that leaves weights at their initial values would give silently wrong numbers.
        raise ModelUnusable(
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


_INTERPOLATIONS = {"bicubic": "BICUBIC", "bilinear": "BILINEAR"}


def tensor_transform(cfg: dict[str, Any]) -> Any | None:
    """open_clip's inference preprocessing (resize, centre crop, scale, normalise) on uint8 tensors,
    when the config is one of the standard ones; None otherwise (the PIL path then serves).

    torchvision's antialiased tensor resize approximates PIL's resampling within one grey level,
    which moves the final vectors by less than 1e-4 cosine (tests and docs/performance.md)."""
    from torchvision.transforms import v2

    size, mode = cfg.get("size"), cfg.get("resize_mode", "shortest")
    interpolation = _INTERPOLATIONS.get(str(cfg.get("interpolation", "bicubic")))
    if not isinstance(size, tuple | list) or interpolation is None or mode not in ("shortest", "squash"):
        return None
    height, width = int(size[0]), int(size[1])
    method = getattr(v2.InterpolationMode, interpolation)
    resize = (
        v2.Resize(min(height, width), interpolation=method, antialias=True)
        if mode == "shortest"
        else v2.Resize((height, width), interpolation=method, antialias=True)
    )
    return v2.Compose(
        [
            resize,
            v2.CenterCrop((height, width)),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(cfg.get("mean", (0.0,) * 3)), std=list(cfg.get("std", (1.0,) * 3))),
        ]
    )

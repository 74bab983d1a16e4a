"""The contract every model family implements, and the runtime options they share.

The batcher calls `preprocess_image` off the event loop, per item, and `embed_images` /
`embed_texts` on whole batches, one forward at a time per device. Outputs are always
L2-normalised float32 rows, whatever precision the forward pass used.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import torch
from PIL import Image

from marsbench.encoder.errors import InvalidInput, ModelLoadFailed
from marsbench.encoder.registry import ModelSpec, Precision
from marsbench.schemas.common import Modality


@dataclass(frozen=True)
class PromptOptions:
    """Per-request prompt choices; requests with different options are batched apart."""

    instruction: str | None = None
    prompt_name: str | None = None


DEFAULT_PROMPT = PromptOptions()


@dataclass(frozen=True)
class RuntimeOptions:
    """How models run on this encoder (from the encoder settings)."""

    device: str = "auto"
    # Autocast dtype on GPU; CPU always runs fp32 so that results match reference numbers.
    gpu_precision: Precision = "bf16"
    # 'reference': a model whose registry entry names a `cpu_precision` runs in it on the CPU too.
    cpu_precision: Literal["fp32", "reference"] = "fp32"
    # Allow full pickle loading of checkpoint files (training checkpoints hold more than tensors).
    trust_checkpoints: bool = False
    cache_dir: str | None = None

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


def autocast_for(device: torch.device, precision: Precision) -> AbstractContextManager[object]:
    """Mixed precision on GPU only; fp32 everywhere else."""
    if device.type != "cuda" or precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def precision_for(spec: ModelSpec, options: RuntimeOptions) -> Precision:
    """The model's own GPU precision if its registry entry sets one, else the encoder's."""
    return spec.precision or options.gpu_precision


def cpu_precision_for(spec: ModelSpec, options: RuntimeOptions) -> Precision:
    """fp32, unless the encoder asks for the reference's dtype and the model has one of its own."""
    if options.cpu_precision == "reference" and spec.cpu_precision is not None:
        return spec.cpu_precision
    return "fp32"


def run_precision(spec: ModelSpec, options: RuntimeOptions) -> Precision:
    """The precision a model's forward pass runs in on this encoder's device, as cards report it."""
    if options.torch_device().type == "cuda":
        return precision_for(spec, options)
    return cpu_precision_for(spec, options)


# transformers 5 builds a tokenizer holding only its special tokens when the vocabulary files are
# missing, and such a tokenizer maps every word to <unk>: silently useless embeddings.
MIN_VOCABULARY = 1000


def check_vocabulary(size: int, model_vocab: int | None, *, what: str) -> None:
    """Refuse a tokenizer whose vocabulary is implausibly small for its model."""
    floor = MIN_VOCABULARY if model_vocab is None else min(MIN_VOCABULARY, model_vocab // 2)
    if size < floor:
        expected = f" (the model has {model_vocab} token embeddings)" if model_vocab else ""
        raise ModelLoadFailed(
            f"{what} has only {size} tokens{expected}: its vocabulary files (vocab.json + merges.txt, "
            "tokenizer.json or spiece.model) are missing from the model folder or snapshot"
        )


def normalized_rows(features: torch.Tensor) -> np.ndarray:
    """L2-normalise in float32 and hand back a contiguous numpy array."""
    features = torch.nn.functional.normalize(features.float(), p=2, dim=-1)
    return np.ascontiguousarray(features.cpu().numpy(), dtype=np.float32)


def module_bytes(module: torch.nn.Module) -> int:
    """Memory held by a module's parameters and buffers, as loaded."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


class TorchEmbedder:
    """What every torch-backed adapter shares: its spec, device, precision, memory and release."""

    def __init__(self, spec: ModelSpec, model: torch.nn.Module, options: RuntimeOptions) -> None:
        self.spec = spec
        self._model: torch.nn.Module | None = model
        self._device = options.torch_device()
        self._precision = precision_for(spec, options)
        self._cpu_precision = cpu_precision_for(spec, options)
        self.modalities = spec.modalities
        self.memory_bytes = module_bytes(model)

    @property
    def module(self) -> torch.nn.Module:
        if self._model is None:
            raise RuntimeError(f"model {self.spec.name!r} was closed")
        return self._model

    def autocast(self) -> AbstractContextManager[object]:
        return autocast_for(self._device, self._precision)

    # Prompts: the towers take none; MLLM embedders override these.
    prompt_names: tuple[str, ...] = ()
    accepts_instruction = False
    # Whether an item's vector is independent of the batch it is embedded in; when not, the
    # engine embeds each request as the caller grouped it.
    batch_invariant = True
    # Whether `preprocess_tensor` can take decoded uint8 tensors instead of PIL images.
    tensor_preprocessing = False
    # Whether `preprocess_image` takes RGBA images as decoded (it flattens them itself).
    keeps_alpha = False
    # What turns a decoded image into the model's input, for cards and run records.
    preprocessing = ""
    tensor_preprocessing_card = ""

    def preprocess_tensor(self, pixels: torch.Tensor) -> Any:
        raise NotImplementedError(f"model {self.spec.name!r} preprocesses PIL images only")

    def prompts(self) -> dict[str, str]:
        return {}

    def check_options(self, options: PromptOptions) -> None:
        """Refuse prompt options the model does not have, naming what it does have."""
        if options.instruction is not None and not self.accepts_instruction:
            raise InvalidInput(f"model {self.spec.name!r} takes no instruction; leave 'instruction' unset")
        if options.prompt_name is not None and options.prompt_name not in self.prompt_names:
            known = ", ".join(self.prompt_names) or "none"
            raise InvalidInput(
                f"model {self.spec.name!r} has no prompt named {options.prompt_name!r}; "
                f"its prompt names: {known}"
            )

    def embed_prepared(self, items: Sequence[Any], options: PromptOptions = DEFAULT_PROMPT) -> np.ndarray:
        """A batch of `preprocess_image` outputs to vectors; fixed-size inputs are stacked."""
        return self.embed_images(torch.stack(list(items)))

    def embed_images(self, pixels: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        self._model = None
        gc.collect()
        if self._device.type == "cuda":
            torch.cuda.empty_cache()


class EmbeddingModel(Protocol):
    spec: ModelSpec
    dimension: int
    memory_bytes: int
    modalities: frozenset[Modality]
    image_size: int | None

    prompt_names: tuple[str, ...]
    accepts_instruction: bool
    batch_invariant: bool
    tensor_preprocessing: bool
    keeps_alpha: bool
    preprocessing: str  # the PIL path, as cards and run records name it
    tensor_preprocessing_card: str  # the tensor path, when `tensor_preprocessing`

    def preprocess_image(self, image: Image.Image) -> Any:
        """One decoded RGB image to what `embed_prepared` batches: the model's input tensor (C, H, W)
        for fixed-size towers, a resized image for dynamic-resolution MLLMs."""
        ...

    def embed_prepared(self, items: Sequence[Any], options: PromptOptions = DEFAULT_PROMPT) -> np.ndarray:
        """A batch of prepared images to (N, dimension) normalised float32."""
        ...

    def preprocess_tensor(self, pixels: torch.Tensor) -> Any:
        """A decoded (3, H, W) uint8 tensor to the same input `preprocess_image` gives (within 1e-4
        cosine of the final vectors), when `tensor_preprocessing` is True."""
        ...

    def embed_texts(self, texts: Sequence[str], options: PromptOptions = DEFAULT_PROMPT) -> np.ndarray:
        """Texts to (N, dimension) normalised float32."""
        ...

    def check_options(self, options: PromptOptions) -> None: ...

    def prompts(self) -> dict[str, str]:
        """The prompts and instructions the model applies by default, for model cards and records."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> int: ...

    def close(self) -> None:
        """Release device memory."""
        ...

"""The contract every model family implements, and the runtime options they share.

The batcher calls `preprocess_image` off the event loop, per item, and `embed_images` /
`embed_texts` on whole batches, one forward at a time per device. Outputs are always
L2-normalised float32 rows, whatever precision the forward pass used.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch
from PIL import Image

from marsbench.encoder.core.registry import ModelSpec
from marsbench.schemas.common import Modality

Precision = Literal["fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class RuntimeOptions:
    """How models run on this encoder (from the encoder settings)."""

    device: str = "auto"
    # Autocast dtype on GPU; CPU always runs fp32 so that results match reference numbers.
    gpu_precision: Precision = "bf16"
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


def normalized_rows(features: torch.Tensor) -> np.ndarray:
    """L2-normalise in float32 and hand back a contiguous numpy array."""
    features = torch.nn.functional.normalize(features.float(), p=2, dim=-1)
    return np.ascontiguousarray(features.cpu().numpy(), dtype=np.float32)


class EmbeddingModel(Protocol):
    spec: ModelSpec
    dimension: int
    modalities: frozenset[Modality]
    image_size: int | None

    def preprocess_image(self, image: Image.Image) -> torch.Tensor:
        """One decoded RGB image to the model's input tensor (C, H, W)."""
        ...

    def embed_images(self, pixels: torch.Tensor) -> np.ndarray:
        """A stacked batch (N, C, H, W) to (N, dimension) normalised float32."""
        ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts to (N, dimension) normalised float32."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> int: ...

    def close(self) -> None:
        """Release device memory."""
        ...

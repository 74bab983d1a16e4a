"""Image decoding: bytes or data URIs to RGB PIL images (RGBA kept for models that flatten
transparency themselves), with errors that name the item."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from marsbench.encoder.errors import InvalidInput
from marsbench.schemas.datauri import decode_data_uri


def data_uri_bytes(value: str, index: int) -> bytes:
    """Decode one data URI of a request, naming its index on failure."""
    try:
        return decode_data_uri(value)
    except ValueError as exc:
        raise InvalidInput(str(exc), index) from None


def decode_tensor(data: bytes, index: int, *, max_pixels: int) -> torch.Tensor:
    """Decode to a (3, H, W) uint8 RGB tensor, for preprocessing that resizes tensors: the pixels
    are PIL's (the same as the PIL path's), everything after decoding runs in torch."""
    image = decode_image(data, index, max_pixels=max_pixels)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)  # a writable copy, as torch wants


def decode_image(data: bytes, index: int, *, max_pixels: int, keep_alpha: bool = False) -> Image.Image:
    """Decode fully (so truncated files fail here, not in a batch) and convert to RGB, which drops
    an alpha channel as the reference's loaders do (`Image.open(path).convert("RGB")`). With
    `keep_alpha` an RGBA image stays RGBA, for a model whose reference code flattens it itself."""
    if not data:
        raise InvalidInput("empty image", index)
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidInput(
                    f"image has {width}x{height} pixels, over the limit of {max_pixels}", index
                )
            image.load()
            return image.convert("RGBA" if keep_alpha and image.mode == "RGBA" else "RGB")
    except InvalidInput:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidInput(f"cannot decode image: {exc}", index) from None

"""Image decoding: bytes or data URIs to RGB PIL images, with errors that name the item."""

from __future__ import annotations

import base64
import binascii
import io
import re

from marsbench.encoder.core.errors import InvalidInput
from PIL import Image, UnidentifiedImageError

_DATA_URI = re.compile(r"^data:(?P<mime>[\w/+.-]*)(?P<params>(;[\w=.-]+)*);base64,", re.ASCII)


def data_uri_bytes(value: str, index: int) -> bytes:
    """Decode `data:image/png;base64,...` (or bare base64) to bytes."""
    match = _DATA_URI.match(value)
    payload = value[match.end() :] if match else value
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            "not a base64 image; send 'data:image/png;base64,<data>' or use the binary endpoint",
            index,
        ) from None


def decode_image(data: bytes, index: int, *, max_pixels: int) -> Image.Image:
    """Decode fully (so truncated files fail here, not in a batch) and convert to RGB."""
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
            return image.convert("RGB")
    except InvalidInput:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidInput(f"cannot decode image: {exc}", index) from None

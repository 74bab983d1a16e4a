"""Images inside JSON travel as base64 data URIs; one definition for services and clients."""

from __future__ import annotations

import base64
import binascii
import re

_DATA_URI = re.compile(r"^data:(?P<mime>[\w/+.-]*)(?P<params>(;[\w=.-]+)*);base64,", re.ASCII)


def decode_data_uri(value: str) -> bytes:
    """`data:image/png;base64,...` (or bare base64) to bytes; ValueError if it is not base64."""
    match = _DATA_URI.match(value)
    payload = value[match.end() :] if match else value
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "not a base64 image; send 'data:image/png;base64,<data>' or use the binary endpoint"
        ) from None


def encode_data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"

"""Fast stand-in tiles for benchmarks of decoding and resizing: smooth relief plus grain, saved as
RGB PNG, which compresses like CTX tiles (about 300 KB at 512 px) rather than like flat images."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ._io import encode_png


def relief_png_tiles(count: int, size: int = 512, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    tiles = []
    for i in range(count):
        relief = 128 + 60 * np.sin(x / (17 + i)) + 40 * np.cos(y / (23 + i)) + rng.normal(0, 12, (size, size))
        grey = np.clip(relief, 0, 255).astype(np.uint8)
        tiles.append(encode_png(np.asarray(Image.fromarray(grey).convert("RGB"))))
    return tiles

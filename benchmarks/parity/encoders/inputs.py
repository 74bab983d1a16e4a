"""The shared inputs both sides embed: a few PNG images that exercise preprocessing, and texts.

Images (`images/NN.png`): non-square both ways, one smaller than any crop (23x41), one larger than
the crop (300x211), a grayscale 'L' file, an RGBA file with varying alpha, and fine textures
(checkerboards, one-pixel stripes, noise) so that resampling differences show in the pixels.
Texts (`texts.json`): five lengths, from one word to one past every tiny model's context, so that a
batch is padded and the longest one is truncated.

Everything is generated from fixed seeds: the same bytes on every run and machine (PIL's PNG writer
is deterministic for a given Pillow version; the files are written once and both sides read them).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

TEXTS = [
    "crater",
    "a fresh impact crater with a bright ejecta blanket",
    "Dark slope streaks on a dusty hillside, seen from orbit.",
    "layered sedimentary deposits exposed in the wall of a canyon, with wind-blown dunes on its "
    "floor and small craters scattered across the plateau above it",
    "polar layered deposits, " * 30 + "and the residual ice cap",
]


def _texture(width: int, height: int, seed: int) -> np.ndarray:
    """RGB uint8: a checkerboard of 1-3 px cells, a colour gradient, one-pixel stripes and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    cell = 1 + seed % 3
    checker = (((x // cell) + (y // cell)) % 2) * 120
    stripes = (x % 2) * 60
    gradient = (x * 255 // max(width - 1, 1)).astype(np.int64)
    noise = rng.integers(0, 60, size=(height, width, 3))
    rgb = np.stack([checker + gradient // 3, stripes + (y * 200 // max(height - 1, 1)), gradient], axis=-1)
    return np.clip(rgb + noise, 0, 255).astype(np.uint8)


def images() -> list[Image.Image]:
    """Six images: (size, mode) chosen to exercise resize, crop, channel conversion."""
    out = [
        Image.fromarray(_texture(300, 211, 1)),  # wider than high, larger than every crop
        Image.fromarray(_texture(23, 41, 2)),  # tiny, taller than wide: upsampled
        Image.fromarray(_texture(64, 64, 3)),  # square
        Image.fromarray(_texture(97, 150, 4)).convert("L"),  # grayscale file, taller than wide
    ]
    rgba = _texture(120, 77, 5)
    alpha = (np.arange(120)[None, :].repeat(77, 0) * 2).astype(np.uint8)
    out.append(Image.fromarray(np.dstack([rgba, alpha]), mode="RGBA"))  # alpha is dropped, not blended
    out.append(Image.fromarray(_texture(513, 129, 6)))  # very wide: the centre crop keeps a quarter
    return out


def write_inputs(folder: Path) -> Path:
    """Write `images/NN.png` and `texts.json` into `folder` (idempotent) and return it."""
    image_dir = folder / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images()):
        image.save(image_dir / f"{i:02d}.png", format="PNG")
    (folder / "texts.json").write_text(json.dumps(TEXTS, indent=1))
    return folder


def image_files(folder: Path) -> list[Path]:
    return sorted((folder / "images").glob("*.png"))


def texts(folder: Path) -> list[str]:
    loaded: list[str] = json.loads((folder / "texts.json").read_text())
    return loaded

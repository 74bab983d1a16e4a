"""Shared fixtures: a tiny random open_clip model in open_clip's local-dir format, small datasets."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from marsbench.store import EmbeddedStore

# Small enough to load in milliseconds; the SimpleTokenizer ships with open_clip (no download).
TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}
TINY_PREPROCESS = {
    "mean": [0.5, 0.5, 0.5],
    "std": [0.25, 0.25, 0.25],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}


def write_random_open_clip(folder: Path, seed: int = 0) -> Path:
    """A random-weight open_clip model as `local-dir:` expects it (config JSON + safetensors)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": TINY_CFG, "preprocess_cfg": TINY_PREPROCESS})
    )
    model = open_clip.create_model("local-dir:" + str(folder), load_weights=False)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return folder


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_open_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_clip_ref(tiny_clip_dir: Path) -> str:
    return f"open_clip:local-dir:{tiny_clip_dir}"


def png_bytes(seed: int, size: int = 40, pattern: int = 0) -> bytes:
    """A deterministic grey image; `pattern` changes its structure so classes differ."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    base = 128 + 100 * np.sin((x * (pattern + 1) + y * pattern) / 4.0)
    pixels = np.clip(base + rng.normal(0, 20, (size, size)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


LANDFORM_CLASSES = ("crater", "yardang", "alluvial_fan")


@pytest.fixture
def landform_folders(tmp_path: Path) -> Path:
    """A folder-per-class landform dataset: 3 classes x 5 images, plus one corrupt PNG."""
    root = tmp_path / "dataset"
    for pattern, name in enumerate(LANDFORM_CLASSES):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(5):
            (folder / f"{name}_{i}.png").write_bytes(png_bytes(10 * pattern + i, pattern=pattern))
    (root / "crater" / "broken.png").write_bytes(png_bytes(99)[:60])
    return root


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedStore]:
    """An empty embedded Qdrant store of the test's own, closed afterwards."""
    with EmbeddedStore(tmp_path / "qdrant") as opened:
        yield opened

"""What every reference script shares: its arguments, the shared inputs, the output file.

Runs in a reference environment (never marsbench's): standard library, numpy and PIL only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[4]


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--case", required=True)
    parser.add_argument("--reference", type=Path, required=True, help="MarsRetrieval checkout")
    parser.add_argument("--third-party", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True, help="the tiny model's folder")
    parser.add_argument("--inputs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    # The reference's modules import as `models.*`, `configs.*` from its checkout's root.
    sys.path.insert(0, str(args.reference.resolve()))
    return args


def image_paths(inputs: Path) -> list[Path]:
    return sorted((inputs / "images").glob("*.png"))


def load_rgb(path: Path) -> Any:
    """As the reference's datasets open a file: PIL, converted to RGB when it is not."""
    from PIL import Image

    image = Image.open(path)
    return image.convert("RGB") if image.mode != "RGB" else image


def texts(inputs: Path) -> list[str]:
    loaded: list[str] = json.loads((inputs / "texts.json").read_text())
    return loaded


def save(out: Path, meta: dict[str, Any], image: Any = None, text: Any = None) -> None:
    import transformers

    arrays = {}
    for key, value in (("image", image), ("text", text)):
        if value is not None:
            arrays[key] = np.asarray(
                value.detach().float().cpu().numpy() if hasattr(value, "detach") else value, dtype=np.float32
            )
    meta = {"transformers": transformers.__version__} | meta
    np.savez(out, meta=json.dumps(meta), **arrays)

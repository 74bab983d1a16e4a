"""Reference side of the E5-V cross-check: MarsRetrieval's own `build_e5v_components`,
`E5VImageEncoder` and `E5VTextEncoder`, on the CPU in fp32, one batch per modality.

    python reference/e5v.py --case e5-v --reference /tmp/ref --third-party TP --model DIR \
        --inputs DIR --out OUT.npz

Images are opened as the reference's landform folder loader does (`Image.open`, converted to RGB
when not RGB), then handed to the encoder, whose `_prepare_images` converts again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("--case", "--reference", "--third-party", "--model", "--inputs", "--out"):
        parser.add_argument(name, required=name != "--third-party")
    return parser.parse_args(argv)


def load_images(inputs: Path) -> list[Any]:
    """As mars_datasets/landform_dataset.py LandformImageDataset.__getitem__ does."""
    from PIL import Image

    images = []
    for path in sorted((inputs / "images").glob("*.png")):
        image = Image.open(path)
        if image.mode != "RGB":
            image = image.convert("RGB")
        images.append(image)
    return images


def load_texts(inputs: Path) -> list[str]:
    texts: list[str] = json.loads((inputs / "texts.json").read_text())
    return texts


def write(out: Path, image: Any, text: Any, meta: dict[str, Any]) -> None:
    import transformers

    meta = {"transformers": transformers.__version__, **meta}
    arrays = {"meta": np.array(json.dumps(meta))}
    if image is not None:
        arrays["image"] = np.asarray(image.detach().cpu().float().numpy(), dtype=np.float32)
    if text is not None:
        arrays["text"] = np.asarray(text.detach().cpu().float().numpy(), dtype=np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    sys.path.insert(0, str(Path(args.reference).resolve()))
    import torch
    from models.e5v import build_e5v_components  # type: ignore[import-not-found]
    from models.image_encoder.e5v_image_encoder import E5VImageEncoder  # type: ignore[import-not-found]
    from models.text_encoder.e5v_text_encoder import E5VTextEncoder  # type: ignore[import-not-found]

    torch.manual_seed(0)
    device = torch.device("cpu")
    components = build_e5v_components(SimpleNamespace(model=args.model), device)
    image_encoder = E5VImageEncoder(components)
    text_encoder = E5VTextEncoder(components)
    image = image_encoder.encode_image(load_images(Path(args.inputs)))
    text = text_encoder.encode_text(load_texts(Path(args.inputs)))
    processor = components.processor
    meta = {
        "case": args.case,
        "image_processor": type(processor.image_processor).__name__,
        "tokenizer": type(processor.tokenizer).__name__,
        "padding_side": processor.tokenizer.padding_side,
        "dtype": str(next(components.model.parameters()).dtype),
    }
    write(Path(args.out), image, text, meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

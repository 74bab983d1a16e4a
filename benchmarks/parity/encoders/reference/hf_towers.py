"""Reference side of the transformers tower cases: MarsRetrieval's BGE-VL components and encoders
(models/bgevl.py, trust_remote_code) and its DinoV3ImageEncoder (transformers' own classes)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import image_paths, load_rgb, parse_args, save, texts


def _processor_meta(processor: object) -> dict[str, str]:
    name = type(processor).__name__
    fast = name.endswith("Fast")
    return {"image_processor": name, "image_backend": "torchvision" if fast else "pil",
            "resample": str(getattr(processor, "resample", ""))}  # fmt: skip


def bge_vl(args: argparse.Namespace) -> None:
    from configs.model.model_factory import BGEVL
    from models.bgevl import build_bgevl_components
    from models.image_encoder.bgevl_image_encoder import BGEVLImageEncoder
    from models.text_encoder.bgevl_text_encoder import BGEVLTextEncoder

    cfg = BGEVL()
    cfg.model = str(args.model)
    components = build_bgevl_components(cfg, torch.device("cpu"))
    # use_path_inputs: the reference's datasets hand BGE-VL the image file paths.
    image = BGEVLImageEncoder(components).encode_image([str(p) for p in image_paths(args.inputs)])
    text = BGEVLTextEncoder(components).encode_text(texts(args.inputs))
    meta = _processor_meta(components.model.processor.image_processor)
    meta["remote_code"] = type(components.model).__module__
    save(args.out, meta, image=image, text=text)


def dinov3(args: argparse.Namespace) -> None:
    from models.image_encoder.dinov3_image_encoder import DinoV3ImageEncoder

    encoder = DinoV3ImageEncoder(str(args.model), torch.device("cpu"), pooling="cls")
    preprocess = encoder.get_processor()
    batch = torch.stack([preprocess(load_rgb(p)) for p in image_paths(args.inputs)])
    save(args.out, _processor_meta(encoder.processor), image=encoder.encode_image(batch))


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    {"bge-vl": bge_vl, "dinov3": dinov3}[args.case](args)


if __name__ == "__main__":
    main()

"""Reference side of the AIMv2 cases: MarsRetrieval's AIMv2 components and encoders (models/aimv2_vl.py
with AimV2VLImageEncoder / AimV2VLTextEncoder; models/aimv2_vis.py with AimV2VisImageEncoder), which
load the folder with trust_remote_code (Apple's remote code laid out by the case's build)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import image_paths, load_rgb, parse_args, save, texts


def _processor_meta(image_processor: object) -> dict[str, str]:
    name = type(image_processor).__name__
    fast = name.endswith("Fast")
    return {"image_processor": name, "image_backend": "torchvision" if fast else "pil",
            "resample": str(getattr(image_processor, "resample", ""))}  # fmt: skip


def _images(encoder: object, inputs: Path) -> torch.Tensor:
    preprocess = encoder.get_processor()  # type: ignore[attr-defined]
    return torch.stack([preprocess(load_rgb(p)) for p in image_paths(inputs)])


def aimv2_lit(args: argparse.Namespace) -> None:
    from configs.model.model_factory import AimV2VL
    from models.aimv2_vl import build_aimv2_vl_components
    from models.image_encoder.aimv2_vl_image_encoder import AimV2VLImageEncoder
    from models.text_encoder.aimv2_vl_text_encoder import AimV2VLTextEncoder

    cfg = AimV2VL()
    cfg.model = str(args.model)  # the pinned revision (cfg.pretrained) stays as the reference has it
    components = build_aimv2_vl_components(cfg, torch.device("cpu"))
    image_encoder = AimV2VLImageEncoder(components)
    image = image_encoder.encode_image(_images(image_encoder, args.inputs))
    text = AimV2VLTextEncoder(components).encode_text(texts(args.inputs))
    meta = _processor_meta(components.processor.image_processor)
    meta |= {
        "processor": type(components.processor).__name__,
        "remote_code": type(components.model).__module__,
    }
    save(args.out, meta, image=image, text=text)


def aimv2_vis(args: argparse.Namespace) -> None:
    from configs.model.model_factory import AimV2Vis
    from models.aimv2_vis import build_aimv2_vis_components
    from models.image_encoder.aimv2_vis_image_encoder import AimV2VisImageEncoder

    cfg = AimV2Vis()
    cfg.model = str(args.model)
    components = build_aimv2_vis_components(cfg, torch.device("cpu"))
    encoder = AimV2VisImageEncoder(components)
    image = encoder.encode_image(_images(encoder, args.inputs))
    meta = _processor_meta(components.processor) | {"remote_code": type(components.model).__module__}
    save(args.out, meta, image=image)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    {"aimv2-lit": aimv2_lit, "aimv2-vis": aimv2_vis}[args.case](args)


if __name__ == "__main__":
    main()

"""Reference side of the open_clip cases: MarsRetrieval's build_openclip_components and its
OpenCLIPImageEncoder / OpenCLIPTextEncoder, with the args its configs give (OpenCLIP, CLIPMarScope)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

# This file's name is the package's: its folder must not stay on sys.path, or `import open_clip`
# (in the reference's models/openclip.py) would find this script instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
_spec = importlib.util.spec_from_file_location("_common", _HERE / "_common.py")
assert _spec is not None and _spec.loader is not None
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)
REPO_ROOT, image_paths, load_rgb, parse_args, save, texts = (
    _common.REPO_ROOT,
    _common.image_paths,
    _common.load_rgb,
    _common.parse_args,
    _common.save,
    _common.texts,
)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    sys.path.insert(0, str(REPO_ROOT))
    from configs.model.model_factory import CLIPMarScope, OpenCLIP
    from models.image_encoder.openclip_image_encoder import OpenCLIPImageEncoder
    from models.openclip import build_openclip_components
    from models.text_encoder.openclip_text_encoder import OpenCLIPTextEncoder

    import benchmarks.parity.encoders.tiny_timm  # noqa: F401  (the tiny timm towers' names)

    # main.py: config class attributes, then --model_name / --pretrained / --resume_post_train. The
    # hub models run as --pretrained hf-hub:...; open_clip refuses that as a tag and the reference
    # retries with the hub id as the model name: the call made here, with the local folder.
    cfg = CLIPMarScope() if args.case == "marscope" else OpenCLIP()
    cfg.model = f"local-dir:{args.model}"
    cfg.pretrained = None
    if args.case == "marscope":
        from benchmarks.parity.encoders.families.open_clip import MARSCOPE_SIZE

        cfg.force_image_size = MARSCOPE_SIZE
        cfg.resume_post_train = str(args.model.parent / f"{args.model.name}-checkpoint.pt")
    device = torch.device("cpu")
    components = build_openclip_components(cfg, device)
    image_encoder = OpenCLIPImageEncoder(components, device)
    text_encoder = OpenCLIPTextEncoder(components, device)
    preprocess = image_encoder.get_processor()
    batch = torch.stack([preprocess(load_rgb(p)) for p in image_paths(args.inputs)])  # DataLoader's collate
    image = image_encoder.encode_image(batch)
    text = text_encoder.encode_text(texts(args.inputs))
    steps = [type(t).__name__ for t in getattr(preprocess, "transforms", [preprocess])]
    meta = {
        "image_processor": "open_clip:" + "+".join(steps),
        "image_backend": "pil",
        "precision": str(cfg.precision),
        "force_quick_gelu": bool(cfg.force_quick_gelu),
        "force_image_size": cfg.force_image_size,
    }
    save(args.out, meta, image=image, text=text)


if __name__ == "__main__":
    main()

"""transformers tower cases: BGE-VL (CLIP), DINOv3 (CLS token).

The tiny models come from tests/encoder/tiny_models.py (the builders marsbench's own tests use).
Their image processor config is rewritten the way the published hub repository has it, because
that file decides which processor class (and so which resampling code) each transformers version
loads: BGE-VL's is a slow `CLIPImageProcessor` / `CLIPFeatureExtractor` file in the layout of
openai/clip-vit-large-patch14 (int `size` and `crop_size`, bicubic `resample: 3`); DINOv3's names
`DINOv3ViTImageProcessorFast` (the only processor transformers has for it). Sizes are tiny (32 px
instead of 224); mean, std and resampling are the published ones.

The reference loads BGE-VL with trust_remote_code; its hub file `modeling_MMRet_CLIP.py` could not
be found in a public copy here, so a stand-in (benchmarks/parity/encoders/standins/bge_vl/) is copied
into the folder with the config's `auto_map`, as the hub repository lays it out.
AIMv2 (224-lit and 448) is not covered yet: see docs/parity-encoders-draft.md.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from benchmarks.parity.encoders.cases import Case
from benchmarks.parity.encoders.environments import ENVS, REFERENCE_ENV

__all__ = ["CASES", "ENVS"]

STANDINS = Path(__file__).resolve().parents[1] / "standins"
OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
SIZE = 32  # tiny_models.IMAGE_SIZE

# openai/clip-vit-large-patch14's preprocessor_config.json layout (BGE-VL-large is that model
# fine-tuned), at the tiny size.
CLIP_FEATURE_EXTRACTOR = {
    "crop_size": SIZE,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": OPENAI_MEAN,
    "image_std": OPENAI_STD,
    "resample": 3,
    "size": SIZE,
}
# facebook/dinov3-vitl16-pretrain-lvd1689m's preprocessor_config.json, at the tiny size.
DINOV3_PROCESSOR = {
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_processor_type": "DINOv3ViTImageProcessorFast",
    "image_std": [0.229, 0.224, 0.225],
    "resample": 2,
    "rescale_factor": 0.00392156862745098,
    "size": {"height": SIZE, "width": SIZE},
}


def _processor_file(folder: Path, content: dict[str, Any]) -> None:
    (folder / "preprocessor_config.json").write_text(json.dumps(content, indent=2))
    # A processor_config.json written by transformers 5 would override the file above for CLIPProcessor.
    (folder / "processor_config.json").unlink(missing_ok=True)


def build_bge_vl(folder: Path, third_party: Path) -> dict[str, Any]:
    from tests.encoder.tiny_models import write_tiny_clip_hf

    write_tiny_clip_hf(folder, seed=0)
    _processor_file(folder, CLIP_FEATURE_EXTRACTOR)
    shutil.copyfile(STANDINS / "bge_vl" / "modeling_MMRet_CLIP.py", folder / "modeling_MMRet_CLIP.py")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_MMRet_CLIP.CLIPModel"}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return {"source": f"local-dir:{folder}"}


def build_dinov3(folder: Path, third_party: Path) -> dict[str, Any]:
    from tests.encoder.tiny_models import write_tiny_dinov3

    write_tiny_dinov3(folder, seed=0)
    _processor_file(folder, DINOV3_PROCESSOR)
    return {"source": f"local-dir:{folder}"}


CASES = [
    Case(
        name="bge-vl",
        models=("bge-vl-large",),
        env=REFERENCE_ENV,
        build=build_bge_vl,
        reference="hf_towers.py",
        notes="remote code modeling_MMRet_CLIP.py: STAND-IN (standins/bge_vl/, a CLIPModel subclass with "
        "set_processor / encode / encode_text as the published file's semantics); tiny CLIP "
        "(tests/encoder/tiny_models.py), processor file as openai/clip-vit-large-patch14 lays it out",
    ),
    Case(
        name="dinov3",
        models=("dinov3-vitl16",),
        env=REFERENCE_ENV,
        build=build_dinov3,
        reference="hf_towers.py",
        modalities=("image",),
        notes="no remote code (transformers' DINOv3ViTModel on both sides); 2 register tokens, CLS pooling",
    ),
]

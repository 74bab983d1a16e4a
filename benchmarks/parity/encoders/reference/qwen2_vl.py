"""Reference side of the Qwen2-VL cases (gme, vlm2vec, b3, ops-mm): MarsRetrieval's own builders
and encoder classes, run by the case's environment's interpreter (never marsbench's):

    python reference/qwen2_vl.py --case NAME --reference REF --third-party TP --model DIR \
        --inputs DIR --out OUT.npz

Images are opened as the reference's datasets open them (`Image.open`, then `convert("RGB")` when
the mode is not RGB: mars_datasets/landform_dataset.py), texts are read from texts.json; each
modality goes to the reference encoder in one call, on the CPU, in fp32.

What is changed in the reference path, and only that:
- vlm2vec / b3: flash-attn is not installable here; a stand-in `flash_attn` holding only the two
  names VLM2Vec's InternVideo2 module imports at import time (never called) is put in sys.modules
  when the real one is missing. VLM2Vec's loader sets FlashAttention-2 on the config, which cannot
  run on a CPU; its backbone's `from_pretrained` is wrapped to set `sdpa` on that config instead.
  VLM2Vec's Qwen2-VL caches rope deltas at the first forward call of a process and feeds
  sequential positions to every later one: the images are embedded first (saved apart as
  `image_first_call`), then the texts, then the images again (saved as `image`, what every later
  batch gets). (Its image prompt has no <|vision_start|>, so that first call's get_rope_index finds
  no image either and counts positions over the real tokens: the same up to a per-row shift.)
- ops-mm: ops_mm_embedding_v1.py loads the weights in bf16 whatever the device; its
  `from_pretrained` is wrapped to load fp32. Attention `sdpa` is the reference's own option
  (`args.attn_implementation`).
- gme: nothing (the reference loads fp32 on a CPU itself).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import image_paths, load_rgb, texts


def as_array(features: Any) -> Any:
    import numpy as np
    import torch

    if torch.is_tensor(features):
        features = features.detach().to("cpu", torch.float32).numpy()
    return np.asarray(features, dtype=np.float32)


def run_gme(model: Path, images: list[Any], texts: list[str]) -> dict[str, Any]:
    import torch
    from models.gme import build_gme_components
    from models.image_encoder.gme_image_encoder import GMEImageEncoder
    from models.text_encoder.gme_text_encoder import GMETextEncoder

    components = build_gme_components(argparse.Namespace(model=str(model)), torch.device("cpu"))
    out: dict[str, Any] = {}
    if images:
        out["image"] = as_array(GMEImageEncoder(components).encode_image(images))
    out["text"] = as_array(GMETextEncoder(components).encode_text(texts))
    processor = components.model.processor
    return out | {
        "meta": {
            "image_processor": type(processor.image_processor).__name__,
            "dtype": str(next(components.model.parameters()).dtype),
            "max_length": components.model.max_length,
            "patched": "nothing",
        },
    }


def _flash_attn_stand_in() -> None:
    """VLM2Vec's processor module imports its InternVideo2 backbone, which imports two flash_attn
    functions unconditionally; flash-attn cannot be installed on a CPU machine. When it is missing,
    a stand-in package holding only those names (each raising if called) lets the import go
    through; the Qwen2-VL path never calls them, and transformers still reports flash-attn absent
    (the stand-in has no installed distribution)."""
    import importlib.machinery
    import importlib.util
    import types

    if importlib.util.find_spec("flash_attn") is not None:
        return

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("flash_attn stand-in: FlashAttention is not available on this machine")

    names = {
        "flash_attn": {},
        "flash_attn.flash_attn_interface": {"flash_attn_varlen_qkvpacked_func": unavailable},
        "flash_attn.bert_padding": {"unpad_input": unavailable, "pad_input": unavailable},
    }
    for name, attributes in names.items():
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=name == "flash_attn")
        if name == "flash_attn":
            module.__path__ = []
        for attribute, value in attributes.items():
            setattr(module, attribute, value)
        sys.modules[name] = module


def _sdpa_backbone() -> None:
    """Make VLM2Vec's Qwen2-VL loader use SDPA instead of FlashAttention-2 (CPU)."""
    from src.model import processor as vlm2vec_processor

    real = vlm2vec_processor.backbone2model[vlm2vec_processor.QWEN2_VL]

    class SdpaLoader:
        @staticmethod
        def from_pretrained(*args: Any, config: Any, **kwargs: Any) -> Any:
            config._attn_implementation = "sdpa"
            config.vision_config._attn_implementation = "sdpa"
            return real.from_pretrained(*args, config=config, **kwargs)

    vlm2vec_processor.backbone2model[vlm2vec_processor.QWEN2_VL] = SdpaLoader


def run_vlm2vec(model: Path, images: list[Any], texts: list[str]) -> dict[str, Any]:
    import numpy as np
    import torch

    _flash_attn_stand_in()
    _sdpa_backbone()
    from models.image_encoder.vlm2vec_image_encoder import VLM2VecImageEncoder
    from models.text_encoder.vlm2vec_text_encoder import VLM2VecTextEncoder
    from models.vlm2vec import build_vlm2vec_components

    components = build_vlm2vec_components(argparse.Namespace(model=str(model)), torch.device("cpu"))
    image_encoder = VLM2VecImageEncoder(components)
    text_encoder = VLM2VecTextEncoder(components)
    first = as_array(image_encoder.encode_image(list(images)))
    text = as_array(text_encoder.encode_text(texts))
    image = as_array(image_encoder.encode_image(list(images)))
    tokenizer = components.processor.tokenizer
    return {
        "image": image,
        "text": text,
        "image_first_call": first,
        "meta": {
            "image_processor": type(components.processor.image_processor).__name__,
            "image_processor_module": type(components.processor.image_processor).__module__,
            "padding_side": tokenizer.padding_side,
            "dtype": str(next(components.model.parameters()).dtype),
            "attention": "sdpa (patched from flash_attention_2)",
            "first_call_vs_later_max_abs": float(np.abs(first - image).max()),
            "patched": "backbone from_pretrained: config._attn_implementation = sdpa",
            "flash_attn": "stand-in"
            if getattr(sys.modules.get("flash_attn"), "__file__", None) is None
            else "real",
        },
    }


def _fp32_ops_mm() -> Any:
    """Make ops_mm_embedding_v1.OpsMMEmbeddingV1 load fp32 weights instead of bf16."""
    import ops_mm_embedding_v1 as ops
    import torch

    real = ops.AutoModelForImageTextToText

    class Fp32Loader:
        @staticmethod
        def from_pretrained(*args: Any, **kwargs: Any) -> Any:
            kwargs["torch_dtype"] = torch.float32
            return real.from_pretrained(*args, **kwargs)

    ops.AutoModelForImageTextToText = Fp32Loader
    return ops


def run_ops_mm(model: Path, images: list[Any], texts: list[str], *, native: bool = False) -> dict[str, Any]:
    import torch

    # `native` (case ops-mm-bf16) leaves the published bf16 load alone: the reference as it runs,
    # against marsbench under MARSBENCH_ENCODER_CPU_PRECISION=reference.
    if not native:
        _fp32_ops_mm()
    from models.image_encoder.opsmm_v1_image_encoder import OpsMMV1ImageEncoder
    from models.opsmm_v1 import build_opsmm_v1_components
    from models.text_encoder.opsmm_v1_text_encoder import OpsMMV1TextEncoder

    args = argparse.Namespace(model=str(model), attn_implementation="sdpa")
    components = build_opsmm_v1_components(args, torch.device("cpu"))
    image = OpsMMV1ImageEncoder(components).encode_image(images)
    text = OpsMMV1TextEncoder(components).encode_text(texts)
    processor = components.model.processor
    return {
        "image": as_array(image),
        "text": as_array(text),
        "meta": {
            "image_processor": type(processor.image_processor).__name__,
            "dtype": str(next(components.model.base_model.parameters()).dtype),
            "attention": "sdpa (the reference's attn_implementation option)",
            "patched": "nothing (bf16 as published)"
            if native
            else "from_pretrained torch_dtype bf16 -> fp32",
        },
    }


RUNNERS = {
    "gme": run_gme,
    "gme-truncated": run_gme,
    "vlm2vec": run_vlm2vec,
    "b3": run_vlm2vec,
    "ops-mm": run_ops_mm,
    "ops-mm-bf16": functools.partial(run_ops_mm, native=True),
}
# A cut image prompt loses image tokens (both codes truncate after expanding <|image_pad|>).
TEXT_ONLY = {"gme-truncated"}
THIRD_PARTY_DIRS = {
    "vlm2vec": "vlm2vec",
    "b3": "vlm2vec",
    "ops-mm": "ops_mm_embedding",
    "ops-mm-bf16": "ops_mm_embedding",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", required=True, choices=sorted(RUNNERS))
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--third-party", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--inputs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    import transformers

    torch.manual_seed(0)
    sys.path.insert(0, str(args.reference.resolve()))
    if args.case in THIRD_PARTY_DIRS:
        sys.path.insert(0, str((args.third_party / THIRD_PARTY_DIRS[args.case]).resolve()))
    images = [] if args.case in TEXT_ONLY else [load_rgb(path) for path in image_paths(args.inputs)]
    result = RUNNERS[args.case](args.model.resolve(), images, texts(args.inputs))
    meta = {"transformers": transformers.__version__, "torch": torch.__version__, "case": args.case}
    if "peft" in sys.modules:  # VLM2Vec's LoRA/DoRA path
        meta["peft"] = sys.modules["peft"].__version__
    meta |= result.pop("meta")
    arrays = {key: np.asarray(value, dtype=np.float32) for key, value in result.items()}
    np.savez(args.out, meta=json.dumps(meta), **arrays)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())

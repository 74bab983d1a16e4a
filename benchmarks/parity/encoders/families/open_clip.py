"""open_clip cases: DFN2B CLIP (quick-GELU ViT), MarScope (checkpoint on top, forced size), SigLIP,
SigLIP 2 and PE-Core (timm towers, hub `open_clip_config.json` layout).

Each tiny model is written as a hub repository lays it out for open_clip (`open_clip_config.json`
with `model_cfg` and `preprocess_cfg`, `open_clip_model.safetensors`, tokenizer files where the
config names a Hugging Face tokenizer). Weights are random and then perturbed, so that no bias or
norm scale is left at its initial value and a skipped or swapped tensor would show.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from benchmarks.parity.encoders.cases import Case
from benchmarks.parity.encoders.environments import REFERENCE_ENV

TINY_TIMM = "benchmarks.parity.encoders.tiny_timm"

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
CONTEXT = 16  # text positions of the tiny towers (the real ones: 77, 64, 32)
VOCAB = 49408
MARSCOPE_SIZE = 48  # force_image_size of the tiny MarScope (the real one: 512 over a 224 base)

# The preprocessing each real source carries: open_clip's pretrained tag `dfn2b` (`_pcfg`: OpenAI
# mean/std, bicubic, shortest side) and the hub repos' open_clip_config.json (`_slpcfg` for SigLIP:
# 0.5 mean/std, bicubic, squash; `_pecfg` for PE-Core: 0.5, bilinear, squash).
PREPROCESS = {
    "clip": {"mean": OPENAI_MEAN, "std": OPENAI_STD, "interpolation": "bicubic", "resize_mode": "shortest"},
    "siglip": {"mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic", "resize_mode": "squash"},
    "pe": {"mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear", "resize_mode": "squash"},
}


def _clip_cfg(*, quick_gelu: bool) -> dict[str, Any]:
    """ViT-L-14(-quickgelu)'s config at tiny size: open_clip's CLIP with its own text tower."""
    cfg: dict[str, Any] = {
        "embed_dim": 24,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": CONTEXT, "vocab_size": VOCAB, "width": 32, "heads": 2, "layers": 2},
    }
    if quick_gelu:
        cfg["quick_gelu"] = True
    return cfg


def _siglip_cfg(timm_name: str, *, siglip2: bool) -> dict[str, Any]:
    """ViT-L-16-SigLIP-384 / SigLIP2-512's config at tiny size (custom text tower, HF tokenizer)."""
    text: dict[str, Any] = {
        "context_length": CONTEXT,
        "vocab_size": VOCAB,
        "hf_tokenizer_name": "timm/ViT-B-16-SigLIP",  # the folder's own files are used (local-dir)
        "tokenizer_kwargs": {"clean": "canonicalize"},
        "width": 32,
        "heads": 2,
        "layers": 2,
        "no_causal_mask": True,
        "proj_bias": True,
        "pool_type": "last",
        "norm_kwargs": {"eps": 1e-6},
    }
    if siglip2:
        text["act_kwargs"] = {"approximate": "tanh"}
    return {
        "embed_dim": 32,
        "init_logit_bias": -10,
        "custom_text": True,
        "vision_cfg": {
            "image_size": 32,
            "timm_model_name": timm_name,
            "timm_model_pretrained": False,
            "timm_pool": "map",
            "timm_proj": "none",
        },
        "text_cfg": text,
    }


def _pe_cfg() -> dict[str, Any]:
    """PE-Core-L-14-336's config at tiny size (timm Eva tower with RoPE, open_clip text tower)."""
    return {
        "embed_dim": 32,
        "vision_cfg": {
            "image_size": 32,
            "timm_model_name": "parity_tiny_pe_core",
            "timm_model_pretrained": False,
            "timm_pool": "map",
            "timm_proj": None,
        },
        "text_cfg": {"context_length": CONTEXT, "vocab_size": VOCAB, "width": 32, "heads": 2, "layers": 2},
        "custom_text": True,
    }


def _model(cfg: dict[str, Any], seed: int, **overrides: Any) -> torch.nn.Module:
    import open_clip

    import benchmarks.parity.encoders.tiny_timm  # noqa: F401  (registers the tiny timm towers)

    torch.manual_seed(seed)
    cfg = json.loads(json.dumps(cfg)) | overrides
    custom = cfg.pop("custom_text", False)
    model: torch.nn.Module = (open_clip.CustomTextCLIP if custom else open_clip.CLIP)(**cfg)
    generator = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return model.eval()


def _write(folder: Path, cfg: dict[str, Any], preprocess: str, *, seed: int, hf_tokenizer: bool) -> Path:
    from safetensors.torch import save_file

    from tests.encoder.tiny_models import write_clip_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": cfg, "preprocess_cfg": PREPROCESS[preprocess]}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    state = {k: v.contiguous() for k, v in _model(cfg, seed).state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    if hf_tokenizer:
        write_clip_tokenizer(folder, max_length=CONTEXT)
    return folder


def build_dfn2b(folder: Path, third_party: Path) -> dict[str, Any]:
    _write(folder, _clip_cfg(quick_gelu=True), "clip", seed=0, hf_tokenizer=False)
    return {"source": f"local-dir:{folder}"}


def build_marscope(folder: Path, third_party: Path) -> dict[str, Any]:
    """The base model as the pretrained tag gives it (GELU in its config; quick-GELU is forced, as
    CLIPMarScope does), and a training checkpoint of the fine-tuned model at the forced size."""
    cfg = _clip_cfg(quick_gelu=False)
    _write(folder, cfg, "clip", seed=0, hf_tokenizer=False)
    tuned_cfg = cfg | {"vision_cfg": cfg["vision_cfg"] | {"image_size": MARSCOPE_SIZE}, "quick_gelu": True}
    tuned = _model(tuned_cfg, seed=7)
    checkpoint = folder.parent / f"{folder.name}-checkpoint.pt"
    torch.save(
        {"epoch": 1, "state_dict": {f"module.{k}": v for k, v in tuned.state_dict().items()}}, checkpoint
    )
    return {"source": f"local-dir:{folder}", "image_size": MARSCOPE_SIZE, "checkpoint": str(checkpoint)}


def build_siglip(folder: Path, third_party: Path) -> dict[str, Any]:
    _write(folder, _siglip_cfg("parity_tiny_siglip", siglip2=False), "siglip", seed=1, hf_tokenizer=True)
    return {"source": f"local-dir:{folder}"}


def build_siglip2(folder: Path, third_party: Path) -> dict[str, Any]:
    _write(folder, _siglip_cfg("parity_tiny_siglip2", siglip2=True), "siglip", seed=2, hf_tokenizer=True)
    return {"source": f"local-dir:{folder}"}


def build_pe_core(folder: Path, third_party: Path) -> dict[str, Any]:
    _write(folder, _pe_cfg(), "pe", seed=3, hf_tokenizer=False)
    return {"source": f"local-dir:{folder}"}


_SHARED_NOTES = (
    "tiny random weights (width 32, 2 layers, 32 px); reference side: create_model_and_transforms on "
    "the local-dir folder, the call its hf-hub retry path makes"
)
_TIMM_NOTES = (
    "; the timm tower is a registered tiny name with the real entrypoint's arguments "
    "(benchmarks/parity/encoders/tiny_timm.py); the tokenizer is a CLIP BPE HF tokenizer in the folder, "
    "not the real sentencepiece one (vocab 49408)"
)

CASES = [
    Case(
        name="dfn2b-clip",
        models=("dfn2b-clip-vit-l-14",),
        env=REFERENCE_ENV,
        build=build_dfn2b,
        reference="open_clip.py",
        notes="quick-GELU CLIP config with dfn2b's preprocessing in a local-dir folder; the pretrained-tag "
        "download path (weights file + tag preprocessing) is not exercised; " + _SHARED_NOTES,
    ),
    Case(
        name="marscope",
        models=("marscope",),
        env=REFERENCE_ENV,
        build=build_marscope,
        reference="open_clip.py",
        notes=f"force_quick_gelu, force_image_size {MARSCOPE_SIZE} (32 native), training checkpoint "
        "with module. prefixes loaded on top; " + _SHARED_NOTES,
    ),
    Case(
        name="siglip",
        models=("siglip-vit-l-16-384",),
        env=REFERENCE_ENV,
        build=build_siglip,
        reference="open_clip.py",
        notes=_SHARED_NOTES + _TIMM_NOTES,
        imports=(TINY_TIMM,),
    ),
    Case(
        name="siglip2",
        models=("siglip2-vit-l-16-512",),
        env=REFERENCE_ENV,
        build=build_siglip2,
        reference="open_clip.py",
        notes=_SHARED_NOTES + _TIMM_NOTES,
        imports=(TINY_TIMM,),
    ),
    Case(
        name="pe-core",
        models=("pe-core-l-14-336",),
        env=REFERENCE_ENV,
        build=build_pe_core,
        reference="open_clip.py",
        notes=_SHARED_NOTES + "; tiny registered timm Eva tower (tiny_timm.py), open_clip SimpleTokenizer",
        imports=(TINY_TIMM,),
    ),
]

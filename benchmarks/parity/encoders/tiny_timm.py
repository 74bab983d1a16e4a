"""Tiny timm towers of the kinds open_clip's SigLIP, SigLIP 2 and PE-Core configs name.

open_clip builds those vision towers with `timm.create_model(<timm_model_name>)` and passes no size
arguments, so a tiny analogue needs a registered timm name. Each entry here keeps the real
entrypoint's architecture arguments (timm 1.0.31: `vit_large_patch16_siglip_384`,
`vit_large_patch16_siglip_512`, `vit_pe_core_large_patch14_336`) and shrinks only the sizes (width
32, 2 layers, 2 heads, 8-px patches, 32-px input). Both sides import this module before building a
model; it only adds names to timm's registry.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from timm.layers import LayerNorm
from timm.models import register_model
from timm.models.eva import Eva
from timm.models.vision_transformer import VisionTransformer

TINY = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
NAMES = ("parity_tiny_siglip", "parity_tiny_siglip2", "parity_tiny_pe_core")


def _clean(kwargs: dict[str, Any]) -> dict[str, Any]:
    # timm's factory passes these; a directly built model takes no pretrained loading arguments.
    return {
        k: v for k, v in kwargs.items() if k not in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")
    }


@register_model
def parity_tiny_siglip(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """vit_large_patch16_siglip_384's arguments: no class token, attention-pool ('map') head."""
    return VisionTransformer(**(TINY | {"class_token": False, "global_pool": "map"} | _clean(kwargs)))


@register_model
def parity_tiny_siglip2(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """vit_large_patch16_siglip_512's arguments (SigLIP 2 at 512): as SigLIP, with tanh GELU."""
    args = TINY | {"class_token": False, "global_pool": "map", "act_layer": "gelu_tanh"}
    return VisionTransformer(**(args | _clean(kwargs)))


@register_model
def parity_tiny_pe_core(pretrained: bool = False, **kwargs: Any) -> Eva:
    """vit_pe_core_large_patch14_336's arguments: RoPE attention, pre-transformer norm, 'map' pool."""
    args = TINY | {
        "mlp_ratio": 4.0,
        "global_pool": "map",
        "attn_type": "rope",
        "use_pre_transformer_norm": True,
        "use_rot_pos_emb": True,
        "ref_feat_shape": (4, 4),
        "rope_grid_offset": 1.0,
        "rope_grid_indexing": "xy",
        "attn_pool_num_heads": 2,
        "attn_pool_mlp_ratio": 4.0,
        "norm_layer": partial(LayerNorm, eps=1e-5),
    }
    return Eva(**(args | _clean(kwargs)))

"""Turn Apple's original AIMv2 checkpoints into transformers' native layout, once, on disk.

Why this exists: the reference benchmark pins hub revisions of apple/aimv2-large-patch14-224-lit
(c2cd59a786c4c06f39d199c50d08cc2eab9f8605) and apple/aimv2-large-patch14-448
(cefb13f21003bdadba65bfbee956c82b976cd23d) that predate the hub's conversion to transformers' layout.
At those revisions the repos hold Apple's remote-code layout: a config.json with ``auto_map`` and flat
vision fields, and state-dict keys named after Apple's ml-aim modules (``image_encoder.trunk.blocks.0.
attn.qkv.weight``...). The encoder never runs hub remote code; it serves these models with transformers'
own ``Aimv2Model`` / ``Aimv2VisionModel``. So the pinned weights are rewritten here into a folder those
classes load with no missing, unexpected or mismatched keys, next to the processor and tokenizer files.

Sources of the key facts (facts only, no code taken):
- Apple's ml-aim (aim-v2/aim/v2/torch/models.py and layers.py, aim-v1/aim/v1/torch/layers.py and
  models.py) for the original module names: ``preprocessor.patchifier.{proj,norm}``,
  ``preprocessor.pos_embed`` of shape (1, patches, dim), ``trunk.blocks.N.{attn.qkv,attn.proj,norm_1,
  norm_2,mlp.fc1,mlp.fc2,mlp.fc3}``, ``trunk.post_trunk_norm``, the attention-pool head
  ``head.{cls_token,k,v,linear}``, ``text_encoder.preprocessor.{text_embedding,positional_embedding}``,
  ``image_projector``, ``text_projector``, ``log_logit_scale``; the SwiGLU block computes
  ``fc2(silu(fc1(x)) * fc3(x))`` and the fused qkv projection stacks q, k, v along the output dim.
- transformers' conversion script (models/aimv2/convert_aimv2_original_pytorch_to_hf.py): the qkv split,
  the squeezed position embedding and ``use_head=True`` for the LiT vision tower. Its target names are
  older than the installed classes; the targets below were checked against the state_dict of
  transformers 5.24's ``Aimv2Model`` / ``Aimv2VisionModel`` (``attention.out_proj``, ``ffn.gate_proj`` =
  fc1, ``ffn.up_proj`` = fc3, ``ffn.down_proj`` = fc2).

Sizes come from the weight shapes; config.json is read only for what shapes cannot tell (attention
heads, RMSNorm epsilon, the text end-of-text id, the logit-scale cap).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from marsbench.encoder.errors import ModelLoadFailed

log = logging.getLogger(__name__)

# Bump when the conversion's output changes, so that old converted folders are not reused.
CONVERTER_VERSION = "1"

WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
# Non-weight files the image processor and the tokenizer read; copied when present.
PROCESSOR_FILES = (
    "preprocessor_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
    "added_tokens.json",
)

_APPLE_PREFIXES = ("image_encoder.", "text_encoder.", "trunk.", "preprocessor.")
_NATIVE_PREFIXES = ("vision_model.", "text_model.", "embeddings.", "encoder.")

# Original key (relative to its tower) -> native key and the transform its tensor needs. In the
# patterns, group 1 is a block index and the last group "weight" or "bias".
_Rule = tuple[re.Pattern[str], str, str]  # pattern, native template (re.expand), transform name


def _block(original: str, native: str, transform: str = "") -> _Rule:
    pattern = r"trunk\.blocks\.(\d+)\." + original.replace(".", r"\.") + r"\.(weight|bias)"
    return re.compile(pattern), r"encoder.layers.\1." + native + r".\2", transform


_BLOCK_RULES: list[_Rule] = [
    _block("attn.qkv", "attention.{}", "qkv"),  # {} becomes q_proj, k_proj, v_proj
    _block("attn.proj", "attention.out_proj"),
    _block("mlp.fc1", "ffn.gate_proj"),  # fc2(silu(fc1(x)) * fc3(x)) = down(silu(gate(x)) * up(x))
    _block("mlp.fc3", "ffn.up_proj"),
    _block("mlp.fc2", "ffn.down_proj"),
    _block("norm_1", "rms_norm1"),
    _block("norm_2", "rms_norm2"),
    (re.compile(r"trunk\.post_trunk_norm\.weight"), "rms_norm.weight", ""),
]
_VISION_RULES: list[_Rule] = [
    (re.compile(r"preprocessor\.patchifier\.proj\.(weight|bias)"), r"embeddings.patch_embed.\1", ""),
    (re.compile(r"preprocessor\.patchifier\.norm\.weight"), "embeddings.rms_norm.weight", ""),
    (re.compile(r"preprocessor\.pos_embed"), "embeddings.position_embedding.weight", "squeeze0"),
    *_BLOCK_RULES,
]
_HEAD_RULES: list[_Rule] = [
    (re.compile(r"head\.cls_token"), "head.cls_token", ""),
    (re.compile(r"head\.k\.(weight|bias)"), r"head.k_proj.\1", ""),
    (re.compile(r"head\.v\.(weight|bias)"), r"head.v_proj.\1", ""),
    (re.compile(r"head\.linear\.(weight|bias)"), r"head.output_proj.\1", ""),
]
_TEXT_RULES: list[_Rule] = [
    (re.compile(r"preprocessor\.text_embedding\.weight"), "embeddings.token_embedding.weight", ""),
    (re.compile(r"preprocessor\.positional_embedding"), "embeddings.position_embedding.weight", ""),
    *_BLOCK_RULES,
]
_LIT_RULES: list[tuple[str, str, list[_Rule]]] = [  # original prefix, native prefix, rules under it
    ("image_encoder.", "vision_model.", _VISION_RULES + _HEAD_RULES),
    ("text_encoder.", "text_model.", _TEXT_RULES),
    (
        "",
        "",
        [
            (re.compile(r"image_projector\.weight"), "visual_projection.weight", ""),
            (re.compile(r"text_projector\.weight"), "text_projection.weight", ""),
            (re.compile(r"log_logit_scale"), "logit_scale", ""),
        ],
    ),
]
_VISION_ONLY_RULES: list[tuple[str, str, list[_Rule]]] = [("", "", _VISION_RULES)]


# ---------------------------------------------------------------------------------------------- detection


def _weight_files(folder: Path) -> list[Path]:
    """The safetensors files holding the model's weights (single file or an index's shards)."""
    index = folder / WEIGHTS_INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadFailed(f"cannot read the weights index {index}: {exc}") from exc
        return [folder / name for name in sorted(set(weight_map.values()))]
    single = folder / WEIGHTS_FILE
    return [single] if single.is_file() else []


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadFailed(f"cannot read {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelLoadFailed(f"{path} does not hold a JSON object")
    return config


def _keys(files: list[Path]) -> list[str]:
    from safetensors import safe_open

    keys: list[str] = []
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as handle:
                keys.extend(handle.keys())
        except Exception as exc:  # safetensors raises its own error types
            raise ModelLoadFailed(f"cannot read the weights file {path}: {exc}") from exc
    return keys


def is_original_layout(folder: Path) -> bool:
    """True when `folder` holds Apple's original AIMv2 layout, False for transformers' native one.

    The weights' key names decide when they are readable: Apple's start with ``image_encoder.``,
    ``text_encoder.``, ``trunk.`` or ``preprocessor.``; native ones with ``vision_model.``, ``text_model.``,
    ``embeddings.`` or ``encoder.`` (repos converted on the hub kept their remote-code files and may keep
    ``auto_map``). Without readable weights, a config.json with ``auto_map`` marks the original layout.
    """
    folder = Path(folder)
    keys = _keys(_weight_files(folder))
    if any(key.startswith(_APPLE_PREFIXES) for key in keys):
        return True
    if any(key.startswith(_NATIVE_PREFIXES) for key in keys):
        return False
    return "auto_map" in _read_config(folder)


# --------------------------------------------------------------------------------------------- conversion


def ensure_native_layout(folder: Path, *, vision_only: bool, work_dir: Path) -> Path:
    """`folder` itself when it is in transformers' layout, else a converted copy under `work_dir`.

    The copy is made once: its name is derived from the resolved source folder, the sizes and mtimes of
    its weights and config files, the kind of model and the converter's version, so a later call with
    the same source returns it unchanged. It is written to a temporary folder and renamed into place.
    `vision_only` selects ``Aimv2VisionModel`` (no pooling head) over the two-tower ``Aimv2Model``.
    Raises ModelLoadFailed, naming the key or config field, on anything it cannot convert.
    """
    folder = Path(folder)
    if not is_original_layout(folder):
        return folder
    files = _weight_files(folder)
    if not files:
        raise ModelLoadFailed(f"{folder} holds an original AIMv2 config.json but no {WEIGHTS_FILE}")
    work_dir = Path(work_dir)
    target = work_dir / _cache_name(folder, files, vision_only)
    if (target / WEIGHTS_FILE).is_file() and (target / "config.json").is_file():
        return target

    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=work_dir))
    except OSError as exc:
        raise ModelLoadFailed(f"cannot write the converted AIMv2 model under {work_dir}: {exc}") from exc
    try:
        _convert(folder, files, tmp, vision_only=vision_only)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / WEIGHTS_FILE).is_file():  # not another process that finished first
                raise
    except OSError as exc:
        raise ModelLoadFailed(f"cannot write the converted AIMv2 model to {target}: {exc}") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("converted Apple-layout AIMv2 %s into transformers' layout at %s", folder, target)
    return target


def _cache_name(folder: Path, files: list[Path], vision_only: bool) -> str:
    digest = hashlib.sha256()
    digest.update(f"aimv2-layout v{CONVERTER_VERSION} vision_only={vision_only}\n".encode())
    digest.update(f"{folder.resolve()}\n".encode())
    for path in [*files, folder / "config.json"]:
        if path.exists():
            stat = path.stat()  # follows hub-cache symlinks to the blobs
            digest.update(f"{path.name} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", folder.resolve().name)[:48]
    return f"aimv2-native-{stem}-{digest.hexdigest()[:16]}"


def _convert(folder: Path, files: list[Path], out: Path, *, vision_only: bool) -> None:
    original = _load_tensors(files)
    rules = _VISION_ONLY_RULES if vision_only else _LIT_RULES
    _check_prefixes(original, vision_only=vision_only, folder=folder)
    tensors = _rename(original, rules)
    del original
    raw_config = _read_config(folder)
    if vision_only:
        config: Any = _vision_config(tensors, raw_config, prefix="", use_head=False)
    else:
        config = _lit_config(tensors, raw_config)
    config.dtype = _float_dtype(tensors)
    config.architectures = ["Aimv2VisionModel" if vision_only else "Aimv2Model"]
    _check_against_model(tensors, config, vision_only=vision_only)

    from safetensors.torch import save_file

    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    config.save_pretrained(out)
    for name in PROCESSOR_FILES:
        if (folder / name).is_file():
            shutil.copyfile(folder / name, out / name)  # copyfile follows hub-cache symlinks


def _load_tensors(files: list[Path]) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    tensors: dict[str, torch.Tensor] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 (a safe_open handle is not a dict)
                    tensors[key] = handle.get_tensor(key)
        except Exception as exc:
            raise ModelLoadFailed(f"cannot read the weights file {path}: {exc}") from exc
    return tensors


def _check_prefixes(tensors: dict[str, torch.Tensor], *, vision_only: bool, folder: Path) -> None:
    two_tower = any(key.startswith(("image_encoder.", "text_encoder.")) for key in tensors)
    if vision_only and two_tower:
        raise ModelLoadFailed(
            f"{folder} holds a two-tower AIMv2 (keys 'image_encoder.*'/'text_encoder.*') but a vision-only "
            "model (Aimv2VisionModel) was asked for"
        )
    if not vision_only and not two_tower:
        raise ModelLoadFailed(
            f"{folder} holds a vision-only AIMv2 (no 'image_encoder.*' keys) but a two-tower model "
            "(Aimv2Model) was asked for"
        )


def _rename(
    tensors: dict[str, torch.Tensor], groups: list[tuple[str, str, list[_Rule]]]
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        for native_key, value in _map_key(key, tensor, groups):
            if native_key in out:
                raise ModelLoadFailed(
                    f"two original keys map to the native key {native_key!r} (one is {key!r})"
                )
            out[native_key] = value
    return out


def _map_key(
    key: str, tensor: torch.Tensor, groups: list[tuple[str, str, list[_Rule]]]
) -> Iterator[tuple[str, torch.Tensor]]:
    for prefix, native_prefix, rules in groups:
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        for pattern, template, transform in rules:
            match = pattern.fullmatch(rest)
            if match is None:
                continue
            native = native_prefix + match.expand(template)
            yield from _TRANSFORMS[transform](key, native, tensor)
            return
    raise ModelLoadFailed(f"original AIMv2 weight {key!r} has no known native transformers name")


def _as_is(key: str, native: str, tensor: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
    yield native, tensor


def _split_qkv(key: str, native: str, tensor: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
    if tensor.shape[0] % 3:
        raise ModelLoadFailed(f"fused qkv weight {key!r} has {tensor.shape[0]} rows, not a multiple of 3")
    for name, part in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0), strict=True):
        yield native.format(name), part.clone()  # own storage: safetensors refuses shared tensors


def _squeeze0(key: str, native: str, tensor: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
    if tensor.dim() != 3 or tensor.shape[0] != 1:
        raise ModelLoadFailed(f"{key!r} has shape {tuple(tensor.shape)}, expected (1, patches, dim)")
    yield native, tensor[0].clone()


_TRANSFORMS: dict[str, Callable[[str, str, torch.Tensor], Iterator[tuple[str, torch.Tensor]]]] = {
    "": _as_is,
    "qkv": _split_qkv,
    "squeeze0": _squeeze0,
}


# ------------------------------------------------------------------------------------------------ configs


_MISSING = object()


def _field(sections: list[tuple[str, dict[str, Any]]], name: str, default: Any = _MISSING) -> Any:
    """`name` from the first config section holding it; `default`, or ModelLoadFailed naming it."""
    for _, section in sections:
        if name in section and section[name] is not None:
            return section[name]
    if default is _MISSING:
        where = " or ".join(repr(f"{label}{name}") for label, _ in sections)
        raise ModelLoadFailed(
            f"original AIMv2 config.json has no field {where}; the weights' shapes cannot tell it, so it "
            "cannot be converted to transformers' layout"
        )
    return default


def _tensor(tensors: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    try:
        return tensors[key]
    except KeyError:
        raise ModelLoadFailed(f"original AIMv2 weights lack the tensor that maps to {key!r}") from None


def _count_layers(tensors: dict[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"encoder\.layers\.(\d+)\.")
    indices = {int(m.group(1)) for key in tensors if (m := pattern.match(key))}
    if not indices:
        raise ModelLoadFailed(
            f"original AIMv2 weights have no transformer blocks for {prefix or 'the model'}"
        )
    if indices != set(range(len(indices))):
        raise ModelLoadFailed(
            f"original AIMv2 blocks under {prefix!r} are not numbered 0..N-1: {sorted(indices)}"
        )
    return len(indices)


def _biases(tensors: dict[str, torch.Tensor], prefix: str) -> tuple[bool, bool]:
    """(qkv_bias, mlp_bias) from which linear layers carry a bias; native ties out_proj's to qkv's."""
    layer = f"{prefix}encoder.layers.0."
    qkv = f"{layer}attention.q_proj.bias" in tensors
    out = f"{layer}attention.out_proj.bias" in tensors
    mlp = f"{layer}ffn.gate_proj.bias" in tensors
    if qkv != out:
        raise ModelLoadFailed(
            f"original AIMv2 block has qkv bias={qkv} but proj bias={out}; transformers' Aimv2Attention "
            "ties the two (qkv_bias), so this checkpoint cannot be converted"
        )
    return qkv, mlp


def _heads(sections: list[tuple[str, dict[str, Any]]], hidden: int) -> int:
    heads = int(_field(sections, "num_attention_heads"))
    if heads <= 0 or hidden % heads:
        raise ModelLoadFailed(f"num_attention_heads={heads} does not divide the hidden size {hidden}")
    return heads


def _vision_config(
    tensors: dict[str, torch.Tensor], raw: dict[str, Any], *, prefix: str, use_head: bool
) -> Any:
    from transformers import Aimv2VisionConfig

    sections = [("vision_config.", raw.get("vision_config") or {}), ("", raw)]
    kernel = _tensor(tensors, f"{prefix}embeddings.patch_embed.weight")
    if kernel.dim() != 4 or kernel.shape[2] != kernel.shape[3]:
        raise ModelLoadFailed(f"patch kernel has shape {tuple(kernel.shape)}, expected (dim, channels, p, p)")
    hidden, channels, patch = int(kernel.shape[0]), int(kernel.shape[1]), int(kernel.shape[2])
    patches = int(_tensor(tensors, f"{prefix}embeddings.position_embedding.weight").shape[0])
    side = math.isqrt(patches)
    if side * side != patches:
        raise ModelLoadFailed(f"position embedding has {patches} rows, not a square grid of patches")
    qkv_bias, mlp_bias = _biases(tensors, prefix)
    if use_head and (f"{prefix}head.k_proj.bias" in tensors) != qkv_bias:
        raise ModelLoadFailed("pooling head's k/v bias differs from the trunk's qkv bias; cannot convert")
    return Aimv2VisionConfig(
        hidden_size=hidden,
        intermediate_size=int(_tensor(tensors, f"{prefix}encoder.layers.0.ffn.gate_proj.weight").shape[0]),
        num_hidden_layers=_count_layers(tensors, prefix),
        num_attention_heads=_heads(sections, hidden),
        num_channels=channels,
        image_size=side * patch,
        patch_size=patch,
        rms_norm_eps=float(_field(sections, "rms_norm_eps", 1e-5)),  # ml-aim hard-codes 1e-5
        qkv_bias=qkv_bias,
        mlp_bias=mlp_bias,
        use_head=use_head,
        is_native=False,  # learned absolute position embedding
    )


def _lit_config(tensors: dict[str, torch.Tensor], raw: dict[str, Any]) -> Any:
    from transformers import Aimv2Config, Aimv2TextConfig

    vision = _vision_config(tensors, raw, prefix="vision_model.", use_head=True)
    text_raw = raw.get("text_config")
    if not isinstance(text_raw, dict):
        raise ModelLoadFailed("original AIMv2 two-tower config.json has no 'text_config' object")
    sections = [("text_config.", text_raw)]
    embedding = _tensor(tensors, "text_model.embeddings.token_embedding.weight")
    positions = _tensor(tensors, "text_model.embeddings.position_embedding.weight")
    vocab, hidden = int(embedding.shape[0]), int(embedding.shape[1])
    qkv_bias, mlp_bias = _biases(tensors, "text_model.")
    text = Aimv2TextConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=int(_tensor(tensors, "text_model.encoder.layers.0.ffn.gate_proj.weight").shape[0]),
        num_hidden_layers=_count_layers(tensors, "text_model."),
        num_attention_heads=_heads(sections, hidden),
        max_position_embeddings=int(positions.shape[0]),
        rms_norm_eps=float(_field([*sections, ("", raw)], "rms_norm_eps", 1e-5)),
        eos_token_id=int(_field(sections, "eos_token_id", 49407)),  # ml-aim's default
        qkv_bias=qkv_bias,
        mlp_bias=mlp_bias,
    )
    image_proj = _tensor(tensors, "visual_projection.weight")
    text_proj = _tensor(tensors, "text_projection.weight")
    if image_proj.shape[0] != text_proj.shape[0]:
        raise ModelLoadFailed(
            f"image_projector {tuple(image_proj.shape)} and text_projector {tuple(text_proj.shape)} "
            "project to different sizes"
        )
    return Aimv2Config(
        text_config=text.to_dict(),
        vision_config=vision.to_dict(),
        projection_dim=int(image_proj.shape[0]),
        logit_scale_init_value=float(_tensor(tensors, "logit_scale")),
        max_logit_scale=float(_field([("", raw)], "max_logit_scale", 100.0)),
    )


def _float_dtype(tensors: dict[str, torch.Tensor]) -> torch.dtype:
    """The floating dtype holding most of the weights (the checkpoint's own, recorded in config.json)."""
    sizes: dict[torch.dtype, int] = {}
    for tensor in tensors.values():
        if tensor.is_floating_point():
            sizes[tensor.dtype] = sizes.get(tensor.dtype, 0) + tensor.numel()
    if not sizes:
        raise ModelLoadFailed("original AIMv2 weights hold no floating-point tensor")
    return max(sizes, key=sizes.__getitem__)


def _check_against_model(tensors: dict[str, torch.Tensor], config: Any, *, vision_only: bool) -> None:
    """Every key and shape the native class expects, and nothing else (checked on the meta device)."""
    from transformers import Aimv2Model, Aimv2VisionModel

    model_class = Aimv2VisionModel if vision_only else Aimv2Model
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in model_class(config).state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = sorted(
        f"{k} {tuple(tensors[k].shape)} vs {expected[k]}"
        for k in set(expected) & set(tensors)
        if tuple(tensors[k].shape) != expected[k]
    )
    if missing or unexpected or mismatched:
        problems = [
            f"{label}: {', '.join(items[:8])}{' ...' if len(items) > 8 else ''}"
            for label, items in (("missing", missing), ("unexpected", unexpected), ("mismatched", mismatched))
            if items
        ]
        raise ModelLoadFailed(
            f"converted AIMv2 weights do not fit transformers' {model_class.__name__}: " + "; ".join(problems)
        )


__all__ = ["ensure_native_layout", "is_original_layout"]

"""The model registry: every model is a typed spec; models differ by spec, not by code.

A model reference is either a registered name (`marsbench-tiny`) or an ad hoc open_clip form,
`open_clip:<arch>` or `open_clip:<arch>:<pretrained>` (e.g. `open_clip:ViT-B-32:laion2b_s34b_b79k`,
`open_clip:hf-hub:timm/ViT-L-16-SigLIP-384`). Either may end in `@<checkpoint file>`: a local
weights file in open_clip's format (a dict holding `state_dict` or a bare state dict, `module.`
prefixes allowed), which is how fine-tuned models such as MarScope are distributed.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from marsbench.encoder.core.errors import InvalidModelRef, UnknownModel
from marsbench.schemas.common import Modality

OPEN_CLIP_PREFIX = "open_clip:"
# open_clip's own schemes take the whole remainder as the model name (pretrained is implied).
_OPEN_CLIP_SCHEMES = ("hf-hub:", "local-dir:")
BOTH = frozenset({Modality.IMAGE, Modality.TEXT})


class ModelSpec(BaseModel):
    """Everything needed to load and serve one model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Registered name or canonical ad hoc reference.")
    family: str = Field(description="Adapter family that loads it (see marsbench.encoder.adapters).")
    source: str = Field(
        description="open_clip: architecture name, or 'hf-hub:<repo>' / 'local-dir:<folder>'; "
        "hub families: the hub repository id."
    )
    pretrained: str | None = Field(default=None, description="open_clip pretrained tag.")
    revision: str | None = Field(default=None, description="Pinned hub revision (commit hash).")
    checkpoint: Path | None = Field(default=None, description="Local weights file loaded last.")
    modalities: frozenset[Modality] = BOTH
    dimension: int | None = Field(default=None, description="Embedding size; None until loaded.")
    image_size: int | None = Field(default=None, description="Forced input size in pixels.")
    force_quick_gelu: bool = False
    default_batch_size: int = 32
    description: str = ""


def assets_dir() -> Path:
    """Folder of the weights shipped inside the `marsbench` package (source or installed)."""
    return Path(str(resources.files("marsbench") / "assets"))


def _tiny_spec() -> ModelSpec:
    return ModelSpec(
        name="marsbench-tiny",
        family="open_clip",
        source=f"local-dir:{assets_dir() / 'marsbench-tiny'}",
        modalities=BOTH,
        default_batch_size=64,
        description="Tiny CLIP trained by the project on its synthetic Mars data (docs/marsbench-tiny.md).",
    )


def registered_specs() -> dict[str, ModelSpec]:
    """Every registered model by name."""
    specs = [_tiny_spec()]
    return {spec.name: spec for spec in specs}


def _parse_open_clip(body: str, full_ref: str) -> tuple[str, str | None]:
    if not body:
        raise InvalidModelRef(f"{full_ref!r}: expected 'open_clip:<arch>[:<pretrained>]'")
    if body.startswith(_OPEN_CLIP_SCHEMES):
        return body, None
    arch, _, pretrained = body.partition(":")
    if not arch:
        raise InvalidModelRef(f"{full_ref!r}: the open_clip architecture name is empty")
    return arch, pretrained or None


def resolve_model(ref: str, specs: dict[str, ModelSpec] | None = None) -> ModelSpec:
    """Turn a model reference into its spec; raises UnknownModel / InvalidModelRef."""
    specs = registered_specs() if specs is None else specs
    base, sep, checkpoint = ref.partition("@")
    if sep and not checkpoint:
        raise InvalidModelRef(f"{ref!r}: '@' must be followed by a checkpoint file path")
    ckpt_path = Path(checkpoint).expanduser().resolve() if checkpoint else None
    if base in specs:
        spec = specs[base]
    elif base.startswith(OPEN_CLIP_PREFIX):
        arch, pretrained = _parse_open_clip(base[len(OPEN_CLIP_PREFIX) :], ref)
        spec = ModelSpec(name=base, family="open_clip", source=arch, pretrained=pretrained)
    else:
        raise UnknownModel(ref, sorted(specs))
    if ckpt_path is None:
        return spec
    return spec.model_copy(update={"name": f"{base}@{ckpt_path}", "checkpoint": ckpt_path})


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def _file_stamp(path: Path) -> str:
    stat = path.stat()
    return f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"


def weights_stamp(spec: ModelSpec) -> str:
    """What identifies the weights a spec loads, so that a rewritten checkpoint or model folder is
    told apart from the one a collection was indexed with (names alone cannot)."""
    parts = [spec.source, spec.pretrained or "", spec.revision or ""]
    if spec.source.startswith("local-dir:"):
        folder = Path(spec.source.removeprefix("local-dir:"))
        if folder.is_dir():
            parts += [_file_stamp(p) for p in sorted(folder.iterdir()) if p.suffix in WEIGHT_SUFFIXES]
    if spec.checkpoint is not None and spec.checkpoint.is_file():
        parts.append(_file_stamp(spec.checkpoint))
    return "|".join(parts)

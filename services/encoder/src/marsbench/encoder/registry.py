"""The model registry: every model is a typed spec; models differ by spec, not by code.

Specs come from registry files in TOML: the built-in `models.toml` beside this package, then any
files named by `MARSBENCH_ENCODER_REGISTRY` (docs/models.md shows the format). A user file may add
models or complete built-in ones (e.g. give `marscope` its checkpoint).

A model reference is either a registered name (`marsbench-tiny`) or an ad hoc open_clip form,
`open_clip:<arch>` or `open_clip:<arch>:<pretrained>` (e.g. `open_clip:ViT-B-32:laion2b_s34b_b79k`,
`open_clip:hf-hub:timm/ViT-L-16-SigLIP-384`; `open_clip:<arch>:random` asks for random weights on
purpose). Either may end in `@<checkpoint file>`: a local weights file in open_clip's format (a dict
holding `state_dict` or a bare state dict, `module.` prefixes allowed), which is how fine-tuned
models such as MarScope are distributed.

Paths in a reference come from whoever sends the request: `resolve_model(..., roots=)` confines them
to the model roots before anything reads them, and the spec it returns is marked `from_request`, so
its checkpoint is never fully unpickled. Paths in registry files are the operator's.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from marsbench.encoder.errors import InvalidModelRef, ModelPathNotAllowed, UnknownModel
from marsbench.files import file_sha256
from marsbench.schemas.common import Modality

OPEN_CLIP_PREFIX = "open_clip:"
HUB_SCHEME = "hf-hub:"
LOCAL_SCHEME = "local-dir:"
# open_clip's own schemes take the whole remainder as the model name (pretrained is implied).
_OPEN_CLIP_SCHEMES = (HUB_SCHEME, LOCAL_SCHEME)
# `open_clip:<arch>:random`: random weights, asked for by name (never served by omission).
RANDOM_TAG = "random"
ROOTS_SETTING = "MARSBENCH_ENCODER_MODEL_ROOTS"
BOTH = frozenset({Modality.IMAGE, Modality.TEXT})
BUILTIN_REGISTRY = "models.toml"

Precision = Literal["fp32", "bf16", "fp16"]
# transformers' two image-processing backends: the PIL classes (the reference's "slow" processors)
# and the torchvision ones ("fast"). They round resized pixels differently, by up to a few grey levels.
ImageBackend = Literal["pil", "torchvision"]


class ModelSpec(BaseModel):
    """Everything needed to load and serve one model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Registered name or canonical ad hoc reference.")
    family: str = Field(description="Adapter family that loads it (see marsbench.encoder.adapters).")
    source: str = Field(
        description="'hf-hub:<repo id>' or 'local-dir:<folder>'; open_clip also takes a built-in "
        "architecture name (then `pretrained` names its weights)."
    )
    pretrained: str | None = Field(default=None, description="open_clip pretrained tag.")
    revision: str | None = Field(default=None, description="Pinned hub revision (commit hash).")
    checkpoint: Path | None = Field(default=None, description="Local weights file loaded last.")
    requires_checkpoint: bool = Field(
        default=False, description="The model is only defined by a checkpoint file the user supplies."
    )
    modalities: frozenset[Modality] = BOTH
    dimension: int | None = Field(default=None, description="Embedding size (checked when loaded).")
    image_size: int | None = Field(default=None, description="Forced input size in pixels (open_clip).")
    force_quick_gelu: bool = False
    precision: Precision | None = Field(
        default=None, description="GPU precision for this model; None: the encoder's setting."
    )
    cpu_precision: Precision | None = Field(
        default=None,
        description="The dtype the reference runs this model in on a CPU, where that is not fp32 (Ops-MM: "
        "bf16 on every device); used when the encoder's MARSBENCH_ENCODER_CPU_PRECISION is 'reference'.",
    )
    image_backend: ImageBackend | None = Field(
        default=None,
        description="transformers image-processor backend: 'pil' (the slow classes, which the reference's "
        "transformers loads for processors saved under a slow class name) or 'torchvision'. None: "
        "transformers' own default (torchvision). Not used by open_clip, which has its own transforms.",
    )
    random_weights: bool = Field(
        default=False,
        description="Serve the architecture with random weights, on purpose (tests, smoke runs); without "
        "it a model with no pretrained weights and no checkpoint is refused. Shown on the model card.",
    )
    from_request: bool = Field(
        default=False,
        description="Set by resolve_model when the reference's own paths (checkpoint, local folder) "
        "came from a request: those files are loaded as weights only, whatever the trust setting.",
    )
    default_batch_size: int = Field(default=32, ge=1)
    memory_gb: float | None = Field(
        default=None, gt=0, description="Approximate weights memory in fp32 (GiB), for the memory budget."
    )
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Family-specific options (e.g. pooling)."
    )
    description: str = ""
    facts: str = Field(default="", description="Where the model's settings come from.")

    @field_validator("revision")
    @classmethod
    def _full_hash(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("revision is empty")
        return value

    @model_validator(mode="after")
    def _backend_applies(self) -> ModelSpec:
        if self.image_backend is not None and self.family == "open_clip":
            raise ValueError(
                "image_backend is for transformers image processors; open_clip models preprocess with "
                "their own transforms (MARSBENCH_ENCODER_IMAGE_PREPROCESSING picks the PIL or tensor path)"
            )
        return self

    def hub_repo(self) -> str | None:
        return self.source.removeprefix(HUB_SCHEME) if self.source.startswith(HUB_SCHEME) else None

    def local_folder(self) -> Path | None:
        return Path(self.source.removeprefix(LOCAL_SCHEME)) if self.source.startswith(LOCAL_SCHEME) else None

    def status(self) -> str:
        """'needs checkpoint' until a required checkpoint is named, else 'available'."""
        if self.requires_checkpoint and self.checkpoint is None:
            return "needs checkpoint"
        return "available"


def assets_dir() -> Path:
    """Folder of the weights shipped inside the encoder package (source or installed)."""
    return Path(str(resources.files("marsbench.encoder") / "assets"))


class RegistryError(InvalidModelRef):
    """A registry file that cannot be used; the message names the file and the entry."""


def _expand(value: str, base: Path) -> str:
    """`{assets}` names the shipped weights; relative local folders are relative to the file."""
    value = value.replace("{assets}", str(assets_dir()))
    if value.startswith(LOCAL_SCHEME):
        folder = Path(value.removeprefix(LOCAL_SCHEME)).expanduser()
        return LOCAL_SCHEME + str(folder if folder.is_absolute() else (base / folder).resolve())
    return value


def _entry_fields(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    fields = dict(raw)
    if isinstance(fields.get("source"), str):
        fields["source"] = _expand(fields["source"], base)
    if isinstance(fields.get("checkpoint"), str):
        path = Path(_expand(fields["checkpoint"], base)).expanduser()
        fields["checkpoint"] = path if path.is_absolute() else (base / path).resolve()
    return fields


def parse_registry(
    text: str, *, origin: str, base: Path, known: dict[str, ModelSpec]
) -> dict[str, ModelSpec]:
    """Specs from one registry file's text, merged over `known` (entries naming a known model
    update only the fields they set)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"registry file {origin}: not valid TOML: {exc}") from exc
    unknown_tables = set(document) - {"models"}
    if unknown_tables:
        raise RegistryError(
            f"registry file {origin}: unknown top-level key(s) {sorted(unknown_tables)}; "
            "entries go under [models.<name>]"
        )
    specs = dict(known)
    for name, raw in document.get("models", {}).items():
        if not isinstance(raw, dict):
            raise RegistryError(f"registry file {origin}: [models.{name}] must be a table")
        fields = _entry_fields(raw, base)
        try:
            if name in specs:
                merged = specs[name].model_dump() | fields
                specs[name] = ModelSpec.model_validate(merged | {"name": name})
            else:
                specs[name] = ModelSpec.model_validate(fields | {"name": name})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}" for err in exc.errors()
            )
            raise RegistryError(f"registry file {origin}, [models.{name}]: {problems}") from None
    return specs


def load_registry_files(paths: Iterable[Path], known: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
    specs = dict(known)
    for path in paths:
        path = Path(path).expanduser()
        if not path.is_file():
            raise RegistryError(f"registry file {path} does not exist (MARSBENCH_ENCODER_REGISTRY)")
        specs = parse_registry(path.read_text(), origin=str(path), base=path.parent.resolve(), known=specs)
    return specs


def builtin_specs() -> dict[str, ModelSpec]:
    """The models marsbench knows out of the box (services/encoder/models.toml)."""
    text = (resources.files("marsbench.encoder") / BUILTIN_REGISTRY).read_text()
    return parse_registry(text, origin=BUILTIN_REGISTRY, base=assets_dir(), known={})


def registered_specs(extra_files: Iterable[Path] = ()) -> dict[str, ModelSpec]:
    """Every registered model by name: built-ins, then the user's registry files in order."""
    return load_registry_files(extra_files, builtin_specs())


def _parse_open_clip(body: str, full_ref: str) -> tuple[str, str | None]:
    if not body:
        raise InvalidModelRef(f"{full_ref!r}: expected 'open_clip:<arch>[:<pretrained>]'")
    if body.startswith(_OPEN_CLIP_SCHEMES):
        return body, None
    arch, _, pretrained = body.partition(":")
    if not arch:
        raise InvalidModelRef(f"{full_ref!r}: the open_clip architecture name is empty")
    return arch, pretrained or None


@dataclass(frozen=True)
class ModelRoots:
    """Where paths in requests' model references may lead. `roots` empty: anywhere when `open` (a
    loopback encoder, as for dataset folders), nowhere otherwise."""

    roots: tuple[Path, ...] = ()
    open: bool = True

    @classmethod
    def of(cls, roots: Sequence[str | Path], *, open_without_roots: bool) -> ModelRoots:
        return cls(tuple(Path(root).expanduser().resolve() for root in roots), open_without_roots)

    def confine(self, ref: str, path: str) -> Path:
        """The resolved path once it lies under a root (`..` and symlinks followed first). The
        check reads nothing of the file, and the refusal is the same for a path that exists and one
        that does not, so a caller learns nothing about files outside the roots."""
        resolved = Path(path).expanduser().resolve()
        if self.roots:
            if any(resolved.is_relative_to(root) for root in self.roots):
                return resolved
            shown = ", ".join(map(str, self.roots))
            raise ModelPathNotAllowed(
                ref, path, [str(r) for r in self.roots],
                f"outside the model roots {shown} ({ROOTS_SETTING}): put the file under one of them, "
                "or register the model in a registry file (MARSBENCH_ENCODER_REGISTRY)",
            )  # fmt: skip
        if self.open:
            return resolved
        raise ModelPathNotAllowed(
            ref, path, [],
            f"but this encoder listens beyond loopback and {ROOTS_SETTING} is empty, so references may "
            f"name no files: set {ROOTS_SETTING} to the folders checkpoints may be read from, or "
            "register the model in a registry file (MARSBENCH_ENCODER_REGISTRY)",
        )  # fmt: skip


def _looks_like_path(value: str) -> bool:
    # open_clip reads `pretrained` as a file when one exists by that name; tags hold no separators.
    return "/" in value or "\\" in value or value.startswith((".", "~"))


def resolve_model(
    ref: str, specs: dict[str, ModelSpec] | None = None, *, roots: ModelRoots | None = None
) -> ModelSpec:
    """Turn a model reference into its spec; raises UnknownModel / InvalidModelRef. With `roots`,
    paths the reference itself names are confined to them (ModelPathNotAllowed) before any is read."""
    specs = registered_specs() if specs is None else specs
    base, sep, checkpoint = ref.partition("@")
    if sep and not checkpoint:
        raise InvalidModelRef(f"{ref!r}: '@' must be followed by a checkpoint file path")

    def place(path: str) -> Path:
        return roots.confine(ref, path) if roots is not None else Path(path).expanduser().resolve()

    ckpt_path = place(checkpoint) if checkpoint else None
    if base in specs:
        spec = specs[base]
    elif base.startswith(OPEN_CLIP_PREFIX):
        arch, pretrained = _parse_open_clip(base[len(OPEN_CLIP_PREFIX) :], ref)
        if arch.startswith(LOCAL_SCHEME):
            arch = LOCAL_SCHEME + str(place(arch.removeprefix(LOCAL_SCHEME)))
        if pretrained is not None and _looks_like_path(pretrained):
            pretrained = str(place(pretrained))
        random = pretrained == RANDOM_TAG
        spec = ModelSpec(
            name=base,
            family="open_clip",
            source=arch,
            pretrained=None if random else pretrained,
            random_weights=random,
            from_request=True,
        )
    else:
        raise UnknownModel(ref, sorted(specs))
    if ckpt_path is None:
        return spec
    return spec.model_copy(
        update={"name": f"{base}@{ckpt_path}", "checkpoint": ckpt_path, "from_request": True}
    )


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def _file_stamp(path: Path) -> str:
    stat = path.stat()
    return f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"


def local_weight_files(spec: ModelSpec) -> list[Path]:
    """The weight files a spec reads from local paths (a model folder, a checkpoint); hub models are
    identified by their pinned revision instead."""
    files = []
    folder = spec.local_folder()
    if folder is not None and folder.is_dir():
        files += [p for p in sorted(folder.iterdir()) if p.suffix in WEIGHT_SUFFIXES and p.is_file()]
    if spec.checkpoint is not None and spec.checkpoint.is_file():
        files.append(spec.checkpoint)
    return files


def weights_stamp(spec: ModelSpec) -> str:
    """What identifies the weights a spec loads, so that a rewritten checkpoint or model folder is
    told apart from the one a collection was indexed with (names alone cannot)."""
    parts = [spec.source, spec.pretrained or "", spec.revision or ""]
    parts += [_file_stamp(p) for p in local_weight_files(spec)]
    return "|".join(parts)


_HASHES: dict[str, str] = {}  # by file stamp (path, size, mtime): a reload of an unchanged file is free


def _cached_sha256(path: Path) -> str:
    key = f"{path.resolve()}:{_file_stamp(path)}"
    if key not in _HASHES:
        _HASHES[key] = file_sha256(path)
    return _HASHES[key]


def weights_sha256(spec: ModelSpec) -> dict[str, str]:
    """sha256 of each local weight file, by file name: what reproduces a run on another machine
    (sizes and mtimes only tell a rewrite apart on this one)."""
    return {path.name: _cached_sha256(path) for path in local_weight_files(spec)}

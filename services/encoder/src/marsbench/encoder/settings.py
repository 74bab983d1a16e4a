"""Encoder settings, from environment variables prefixed `MARSBENCH_ENCODER_`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from marsbench.security import AccessSettings
from marsbench.settings import split_list


class EncoderSettings(AccessSettings):
    """Also the API key and MARSBENCH_HOST (`marsbench.security`), read without the encoder's prefix."""

    model_config = SettingsConfigDict(env_prefix="MARSBENCH_ENCODER_", extra="ignore")

    preload: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Models loaded at start-up (comma-separated); /readyz answers 503 until they are.",
    )
    registry: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Registry files (TOML, comma-separated) adding or completing models; docs/models.md.",
    )
    max_loaded_models: int = Field(
        default=2, ge=1, description="How many models stay loaded; the least recently used idle one goes."
    )
    gpu_memory_budget_gb: float | None = Field(
        default=None,
        gt=0,
        description="GiB of model weights kept on the GPU; default: 85% of the device's memory.",
    )
    cpu_memory_budget_gb: float | None = Field(
        default=None, gt=0, description="GiB of model weights kept in CPU memory; default: no limit."
    )
    max_batch_size: int | None = Field(
        default=None, ge=1, description="Items per forward pass; default: each model's own batch size."
    )
    max_wait_ms: float = Field(
        default=5.0,
        ge=0,
        description="How long a batch collects more items after its first one while the device is busy "
        "with another forward; on an idle device a batch starts at once.",
    )
    max_queued_items: int = Field(
        default=8192, ge=1, description="Backpressure: beyond this many queued items requests get 429."
    )
    max_image_pixels: int = Field(default=64_000_000, ge=1, description="Larger images are refused (422).")
    max_request_pixels: int = Field(
        default=300_000_000,
        ge=1,
        description="Pixels of all the images in one request, summed from their headers before any is "
        "decoded (413 beyond): decoding costs CPU by the pixel, and one request of 40 images of 64 Mpx "
        "took 42 s of it. 1,000 tiles of 512 x 512 (262 Mpx) fit.",
    )
    # Request limits: each refusal is a 413 naming its setting. 256 MiB carries a batch of 1,000
    # 512-px PNG tiles with room to spare; Starlette's multipart parser caps files at 1,000 anyway.
    max_body_mb: float = Field(default=256.0, gt=0, description="Largest request body in MiB (413).")
    max_items_per_request: int = Field(
        default=1000, ge=1, le=1000, description="Texts or images in one request (413 beyond)."
    )
    max_text_chars: int = Field(
        default=20_000,
        ge=1,
        description="Characters in one text (413 beyond); within it, each model's tokenizer truncates "
        "to its own context length.",
    )
    request_timeout_s: float | None = Field(
        default=240.0,
        gt=0,
        description="Seconds a request may wait in the queue and the forward once its model is loaded; "
        "beyond, 504 and its queued items are dropped. Below the callers' MARSBENCH_ENCODER_TIMEOUT_S "
        "(300), so they read the reason instead of timing out. Model loading is not counted.",
    )
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    gpu_precision: Literal["fp32", "bf16", "fp16"] = Field(
        default="bf16", description="Autocast dtype on GPU; the CPU runs fp32 (see cpu_precision)."
    )
    cpu_precision: Literal["fp32", "reference"] = Field(
        default="fp32",
        description="'fp32': every model in fp32 on the CPU. 'reference': models the reference runs in "
        "another dtype on every device (registry `cpu_precision`; Ops-MM: bf16) run in that dtype.",
    )
    preprocess_workers: int = Field(default=2, ge=1, description="Threads decoding and resizing images.")
    image_preprocessing: Literal["pil", "tensor"] = Field(
        default="pil",
        description="'pil': each model's own preprocessing, bit for bit as the reference runs it. "
        "'tensor': resize, crop and normalise decoded uint8 tensors in torch (half the resize cost, "
        "1.3x cheaper per 512-px tile here; decoding is unchanged) for models whose preprocessing has "
        "a tensor equivalent (open_clip); vectors stay within 1e-4 cosine (docs/performance.md). "
        "Other models keep the PIL path.",
    )
    trust_checkpoints: bool = Field(
        default=False,
        description="Allow checkpoint files that need full pickle loading, for checkpoints the registry "
        "files (MARSBENCH_ENCODER_REGISTRY) name; a checkpoint a request names is never unpickled.",
    )
    model_roots: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Folders (comma-separated) that paths in requests' model references must lie under, "
        "after resolving `..` and symlinks: checkpoints (`<model>@<file>`), `open_clip:local-dir:<folder>`. "
        "Outside them a reference is refused (422) before the path is read. Empty: any path on loopback "
        "(MARSBENCH_HOST), none beyond it. Paths in registry files are the operator's and not confined.",
    )
    cache_dir: str | None = Field(default=None, description="Where hub weights are cached.")

    @field_validator("preload", "registry", "model_roots", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_list(value)

"""`GET /v1/models`: what the encoder can serve."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from marsbench.schemas.common import Modality


class ModelInfo(BaseModel):
    id: str
    object: Literal["model"] = "model"
    family: str
    modalities: list[Modality]
    dimension: int | None
    image_size: int | None
    loaded: bool
    default_batch_size: int
    description: str = ""
    source: str | None = Field(default=None, description="Hub repository, folder or open_clip architecture.")
    revision: str | None = Field(default=None, description="Pinned hub revision.")
    status: str = Field(
        default="available", description="'loaded', 'available', or 'needs checkpoint' (see description)."
    )
    memory_gb: float | None = Field(
        default=None, description="Weights memory: measured once loaded, else the registry's estimate."
    )
    prompts: dict[str, str] = Field(
        default_factory=dict,
        description="The prompts and instructions the model applies by default (MLLM embedders).",
    )
    prompt_names: list[str] = Field(default_factory=list, description="Accepted `prompt_name` values.")
    accepts_instruction: bool = Field(default=False, description="Whether requests may set `instruction`.")
    weights: str | None = Field(
        default=None, description="Identifies the loaded weights (files, sizes, mtimes); None until loaded."
    )
    weights_sha256: dict[str, str] | None = Field(
        default=None,
        description="sha256 of each local weight file (a checkpoint, a model folder's files) by name; "
        "hub models are identified by `revision` instead. None until loaded.",
    )
    device: str | None = Field(
        default=None,
        description="Where the model runs, e.g. 'cpu' or 'cuda:0 (NVIDIA H100 80GB HBM3)'; None until "
        "loaded.",
    )
    precision: str | None = Field(
        default=None,
        description="The forward pass's precision: on CPU 'fp32' (or the reference's dtype under "
        "MARSBENCH_ENCODER_CPU_PRECISION=reference); on GPU the model's or the encoder's "
        "(MARSBENCH_ENCODER_GPU_PRECISION) fp32, bf16 or fp16. None until loaded.",
    )
    image_backend: str | None = Field(
        default=None,
        description="The registry's transformers image-processor backend ('pil' or 'torchvision'); None: "
        "transformers' default, or a family with its own transforms (open_clip).",
    )
    preprocessing: str | None = Field(
        default=None,
        description="What turns a decoded image into the model's input, as loaded: the processor class "
        "and backend, resize, crop, rescale and normalisation. None until loaded.",
    )
    random_weights: bool = Field(
        default=False,
        description="The model serves random weights, asked for on purpose (`open_clip:<arch>:random` or "
        "`random_weights = true` in its registry entry): its vectors mean nothing.",
    )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelInfo]

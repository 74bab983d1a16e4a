"""Types shared by several wire schemas."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Modality(StrEnum):
    TEXT = "text"
    IMAGE = "image"


# Model references, including ad hoc ones with a checkpoint path ('open_clip:<arch>@/path/to/ckpt.pt').
MAX_REF_CHARS = 1000
# Dataset folders named in requests (Linux's PATH_MAX).
MAX_PATH_CHARS = 4096


class StrictModel(BaseModel):
    """Base of request models: unknown fields are rejected with a 422."""

    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    """Every error response: a machine-readable type and a message saying what to fix."""

    error: str
    message: str
    detail: dict[str, object] | None = None

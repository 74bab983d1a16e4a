"""Types shared by several wire schemas."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Modality(StrEnum):
    TEXT = "text"
    IMAGE = "image"


class StrictModel(BaseModel):
    """Base of request models: unknown fields are rejected with a 422."""

    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    """Every error response: a machine-readable type and a message saying what to fix."""

    error: str
    message: str
    detail: dict[str, object] | None = None

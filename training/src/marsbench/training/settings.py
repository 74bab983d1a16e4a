"""Trainer app settings (prefix `MARSBENCH_`): the API key, body limit and dataset roots every
service shares (marsbench.security), plus where runs write and how many processes one may use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from marsbench.security import AccessSettings, DatasetRootSettings
from marsbench.settings import split_list


class TrainerSettings(AccessSettings, DatasetRootSettings):
    model_config = SettingsConfigDict(env_prefix="MARSBENCH_", extra="ignore")

    train_dir: Path = Field(
        default=Path(".marsbench/training"),
        description="Every run writes into `<train_dir>/<out>` (a request names only `out`); the jobs' "
        "worker configs and output logs go to `<train_dir>/.jobs/<id>/`.",
    )
    train_max_nproc: int = Field(
        default=8, ge=1, description="Most training processes one job may ask for (`nproc`; 422 above)."
    )
    encoder_registry: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices("MARSBENCH_ENCODER_REGISTRY", "encoder_registry"),
        description="Registry files (comma-separated) base models are resolved with, as the encoder's; "
        "a request's `registry` files come after these.",
    )

    @field_validator("encoder_registry", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_list(value)

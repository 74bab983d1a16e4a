"""Settings every service shares, from environment variables prefixed `MARSBENCH_`.

`QDRANT_URL` (and `QDRANT_API_KEY`) are read unprefixed, as Qdrant's own tools name them: when
set, services use that Qdrant server; otherwise the embedded engine under `MARSBENCH_DATA_DIR`.
So are the layout options of the collections a server creates (`QDRANT_SHARD_NUMBER`,
`QDRANT_REPLICATION_FACTOR`, `QDRANT_WRITE_CONSISTENCY_FACTOR`); the embedded engine keeps one
local shard per collection and ignores them (it logs a warning for values other than 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from marsbench.security import AccessSettings, DatasetRootSettings

if TYPE_CHECKING:
    from marsbench.store import VectorStore


def split_list(value: object) -> object:
    """Comma-separated environment values become lists."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class StoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MARSBENCH_", extra="ignore")

    data_dir: Path = Field(
        default=Path(".marsbench"),
        description="Holds the embedded Qdrant store, job state, run records and reports.",
    )
    qdrant_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("QDRANT_URL", "MARSBENCH_QDRANT_URL"),
        description="A Qdrant server; unset means the embedded engine in this process.",
    )
    qdrant_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("QDRANT_API_KEY", "MARSBENCH_QDRANT_API_KEY")
    )
    # Read when a collection is created on a server or cluster; an existing collection keeps its layout.
    qdrant_shard_number: int = Field(
        default=1,
        ge=1,
        validation_alias=AliasChoices("QDRANT_SHARD_NUMBER", "MARSBENCH_QDRANT_SHARD_NUMBER"),
        description="Shards per new collection, spread over the cluster's peers (a multiple of the peer "
        "count spreads evenly). Embedded engine: ignored.",
    )
    qdrant_replication_factor: int = Field(
        default=1,
        ge=1,
        validation_alias=AliasChoices("QDRANT_REPLICATION_FACTOR", "MARSBENCH_QDRANT_REPLICATION_FACTOR"),
        description="Copies of each shard, on distinct peers (at most the peer count). "
        "Embedded engine: ignored.",
    )
    qdrant_write_consistency_factor: int = Field(
        default=1,
        ge=1,
        validation_alias=AliasChoices(
            "QDRANT_WRITE_CONSISTENCY_FACTOR", "MARSBENCH_QDRANT_WRITE_CONSISTENCY_FACTOR"
        ),
        description="Replicas that must apply a write before it is acknowledged (at most the replication "
        "factor). Embedded engine: ignored.",
    )

    @model_validator(mode="after")
    def _consistent_replication(self) -> StoreSettings:
        if self.qdrant_write_consistency_factor > self.qdrant_replication_factor:
            raise ValueError(
                f"QDRANT_WRITE_CONSISTENCY_FACTOR ({self.qdrant_write_consistency_factor}) cannot exceed "
                f"QDRANT_REPLICATION_FACTOR ({self.qdrant_replication_factor})"
            )
        return self

    def open_store(self) -> VectorStore:
        from marsbench.store import open_store  # the store's engine loads only where it is used

        return open_store(
            qdrant_url=self.qdrant_url,
            data_dir=self.data_dir,
            api_key=self.qdrant_api_key,
            shard_number=self.qdrant_shard_number,
            replication_factor=self.qdrant_replication_factor,
            write_consistency_factor=self.qdrant_write_consistency_factor,
        )


class ServiceSettings(StoreSettings, AccessSettings, DatasetRootSettings):
    """Settings of a service that stores vectors and calls the encoder; the API key (also sent to the
    encoder), the body limit and the dataset roots come from `marsbench.security`."""

    model_config = SettingsConfigDict(env_prefix="MARSBENCH_", extra="ignore")

    encoder_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://127.0.0.1:8001"],
        description="Encoder replicas (comma-separated); requests are spread over them.",
    )
    encoder_timeout_s: float = Field(default=300.0, description="Per-request timeout towards the encoder.")

    @field_validator("encoder_urls", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_list(value)

"""Evaluator settings (prefix `MARSBENCH_`, plus `QDRANT_URL`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from marsbench.settings import ServiceSettings


class EvaluatorSettings(ServiceSettings):
    results_dir: Path | None = Field(
        default=None, description="Where run records are written; default `<data_dir>/runs`."
    )

    warm_index_gb: float = Field(
        default=8.0,
        ge=0,
        description="GiB of geo-collection vectors the evaluator keeps in memory for exact top-k "
        "(one matrix product per query); larger collections, or 0, use the engine's exact search.",
    )

    indexer_url: str | None = Field(
        default=None,
        description="The indexer, asked whether a collection's indexing job has finished before it is "
        "evaluated (an incomplete one is refused unless the run says force). Unset: not checked, and "
        "records say the indexing state is unknown.",
    )

    def runs_dir(self) -> Path:
        return self.results_dir or self.data_dir / "runs"

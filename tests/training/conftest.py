"""Synthetic paired shards shared by the training tests (small scale, seed 5: 240 pairs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from marsbench.datasets.synth import synthesize


@pytest.fixture(scope="session")
def pairs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, scale="small", seed=5, tasks=("paired",))
    return out / "paired" / "dataset"

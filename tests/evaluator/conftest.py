"""Fixtures shared by the evaluator tests."""

from pathlib import Path

import pytest

from tests.conftest import png_bytes


@pytest.fixture
def geo_dataset(tmp_path: Path) -> Path:
    root = tmp_path / "dataset"
    (root / "ground_truth").mkdir(parents=True)
    (root / "ground_truth" / "yardangs.csv").write_text("lon,lat,name\n1.0,1.0,a\n3.0,-2.0,b\nnot,a,row\n")
    queries = root / "image_queries" / "yardangs"
    queries.mkdir(parents=True)
    for i in range(2):
        (queries / f"q{i}.png").write_bytes(png_bytes(100 + i))
    return root

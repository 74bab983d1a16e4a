"""marsbench-tiny, as committed, loads through open_clip's own local-dir path and knows landforms."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import numpy as np
import open_clip
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from torch.nn.functional import normalize

from marsbench.datasets.synth import LANDFORM_CLASSES, synthesize
from marsbench.encoder.registry import assets_dir

ASSET = assets_dir() / "marsbench-tiny"
TEMPLATES = (
    "a photo of {}, a type of martian terrain",
    "a satellite photo of {}.",
    "a high-resolution remote sensing image of {} on Mars.",
)
EMBED_DIM = 128
CHANCE = 1 / len(LANDFORM_CLASSES)

Preprocess = Callable[[Image.Image], torch.Tensor]
Tokenizer = Callable[[list[str]], torch.Tensor]
Loaded = tuple[torch.nn.Module, Preprocess, Tokenizer]


@pytest.fixture(scope="module")
def tiny() -> Loaded:
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{ASSET}")
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(f"local-dir:{ASSET}")


@pytest.fixture(scope="module")
def fresh_landforms(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[bytes, int]]:
    """Images the model never saw: a seed used neither for training (1-3) nor for the demo (0)."""
    out = synthesize(tmp_path_factory.mktemp("fresh"), scale="small", seed=11, tasks=("landform",))
    assert out.landform is not None
    files = sorted((out.landform.parquet_dir / "data").glob("*.parquet"))
    return [(r["image"]["bytes"], r["label"]) for f in files for r in pq.read_table(f).to_pylist()]


def _class_queries(model: torch.nn.Module, tokenizer: Tokenizer) -> torch.Tensor:
    """The protocol's per-class text query: three templates, each normalised, averaged, normalised."""
    queries = []
    for name in LANDFORM_CLASSES:
        phrase = name.replace("_", " ").replace("-", " ")
        tokens = tokenizer([t.format(phrase) for t in TEMPLATES])
        queries.append(normalize(model.encode_text(tokens), dim=-1).mean(dim=0))
    return normalize(torch.stack(queries), dim=-1)


@torch.no_grad()
def _accuracy(
    model: torch.nn.Module, preprocess: Preprocess, tokenizer: Tokenizer, data: list[tuple[bytes, int]]
) -> float:
    pixels = torch.stack([preprocess(Image.open(io.BytesIO(b)).convert("RGB")) for b, _ in data])
    images = normalize(model.encode_image(pixels), dim=-1)
    predicted = (images @ _class_queries(model, tokenizer).T).argmax(dim=1).numpy()
    return float((predicted == np.array([label for _, label in data])).mean())


def test_committed_files_are_small_and_in_open_clip_format() -> None:
    config = json.loads((ASSET / "open_clip_config.json").read_text())
    assert {"model_cfg", "preprocess_cfg"} <= set(config)
    assert (ASSET / "open_clip_model.safetensors").stat().st_size <= 10 * 1024 * 1024


def test_loads_as_fp32_with_the_default_tokenizer(tiny: Loaded) -> None:
    model, _, tokenizer = tiny
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert isinstance(tokenizer, open_clip.tokenizer.SimpleTokenizer)
    assert model.visual.image_size == (64, 64)


@torch.no_grad()
def test_embeddings_have_the_model_dimension_and_normalise(tiny: Loaded) -> None:
    model, preprocess, tokenizer = tiny
    image = Image.fromarray(np.full((96, 96), 128, dtype=np.uint8)).convert("RGB")
    img = model.encode_image(preprocess(image).unsqueeze(0))
    txt = model.encode_text(tokenizer(["a satellite photo of yardang.", "a crater"]))
    assert img.shape == (1, EMBED_DIM) and txt.shape == (2, EMBED_DIM)
    assert img.dtype == txt.dtype == torch.float32
    for emb in (img, txt):
        assert torch.allclose(normalize(emb, dim=-1).norm(dim=-1), torch.ones(len(emb)), atol=1e-5)


def test_ranks_the_matching_class_prompt_first_well_above_chance(
    tiny: Loaded, fresh_landforms: list[tuple[bytes, int]]
) -> None:
    model, preprocess, tokenizer = tiny
    accuracy = _accuracy(model, preprocess, tokenizer, fresh_landforms)
    assert accuracy >= 0.6, f"zero-shot accuracy {accuracy:.2f} (chance {CHANCE:.2f})"


def test_the_same_check_fails_for_random_weights(
    tiny: Loaded, fresh_landforms: list[tuple[bytes, int]]
) -> None:
    """The threshold above is meaningful: the same architecture untrained stays near chance."""
    _, preprocess, tokenizer = tiny
    torch.manual_seed(0)
    config = json.loads((ASSET / "open_clip_config.json").read_text())
    untrained = open_clip.CLIP(**config["model_cfg"]).eval()
    assert _accuracy(untrained, preprocess, tokenizer, fresh_landforms) < 0.4

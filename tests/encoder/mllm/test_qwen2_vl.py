"""GME, VLM2Vec / B3 and Ops-MM on a tiny random Qwen2-VL, offline.

Each model is saved as its hub repository lays it out and loaded through `load_model`; the vectors are
checked against hidden states computed here directly with transformers, under each reference's own
rule for prompts, padding, positions and the pooled token.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from marsbench.encoder.adapters import EmbeddingModel, load_model, prompt_card
from marsbench.encoder.adapters.base import PromptOptions
from marsbench.encoder.errors import InvalidInput, ModelLoadFailed
from marsbench.encoder.registry import ModelSpec
from marsbench.schemas.common import Modality
from tests.conftest import png_bytes
from tests.encoder import serving
from tests.encoder.mllm import tiny_qwen2_vl as tiny
from tests.encoder.serving import (
    CPU,
    REVISION,
    ProcessorSpy,
    decode,
    embed,
    png_files,
    served_images,
    served_texts,
)

BOTH = frozenset({Modality.IMAGE, Modality.TEXT})
PIXELS = {"min_pixels": tiny.MIN_PIXELS, "max_pixels": tiny.MAX_PIXELS}
# The registry's options, with pixel bounds small enough for a tiny model.
OPTIONS: dict[str, dict[str, Any]] = {
    "gme": {
        "text_instruction": "Find an image that matches the given text.",
        "image_instruction": "You are a helpful assistant.",
    }
    | PIXELS,
    "vlm2vec": dict(PIXELS),
    "ops_mm": {
        "text_instruction": "You are a helpful assistant.",
        "image_instruction": "You are a helpful assistant.",
    }
    | PIXELS,
}
FAMILIES = tuple(OPTIONS)
TEXTS = ["a crater", "a field of yardangs on Mars seen from orbit", "an alluvial fan"]
EOT = tiny.TOKEN_ID["<|endoftext|>"]


def spec_for(family: str, folder: Path, **options: Any) -> ModelSpec:
    return serving.spec(
        f"tiny-{family}", family, f"local-dir:{folder}", modalities=BOTH, options=OPTIONS[family] | options
    )


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qwen2_vl")
    base = tiny.write_full(root / "base", seed=0)
    return {
        "base": base,
        "adapter": tiny.write_adapter(root / "adapter", base),
        "merged": tiny.write_merged(root / "merged", base),
    }


def folder_of(family: str, folders: dict[str, Path]) -> Path:
    return folders["adapter" if family == "vlm2vec" else "base"]


@pytest.fixture(scope="module")
def models(folders: dict[str, Path]) -> dict[str, EmbeddingModel]:
    return {f: load_model(spec_for(f, folder_of(f, folders)), CPU) for f in FAMILIES}


@pytest.fixture(scope="module")
def service(folders: dict[str, Path]) -> Iterator[TestClient]:
    specs = {f"tiny-{f}": spec_for(f, folder_of(f, folders)) for f in FAMILIES}
    with serving.serve(specs, max_loaded_models=4) as client:
        yield client


def pictures(n: int, start: int = 0) -> list[Image.Image]:
    """Images of different sizes and aspect ratios, so that batches pad."""
    sizes = [(40, 40), (90, 50), (60, 110), (75, 75), (20, 64)]
    out = []
    for i in range(start, start + n):
        grey = decode([png_bytes(i, size=64, pattern=i % 3)])[0]
        out.append(grey.resize(sizes[i % len(sizes)]))
    return out


class Spy:
    """Records every processor call's text and the batches handed to the decoder."""

    def __init__(self, model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.processor = ProcessorSpy(model.processor)
        self.batches: list[dict[str, torch.Tensor]] = []
        hidden_states = model.hidden_states

        def record(inputs: Any) -> torch.Tensor:
            self.batches.append({k: v.clone() for k, v in dict(inputs).items()})
            return hidden_states(inputs)

        monkeypatch.setattr(model, "processor", self.processor)
        monkeypatch.setattr(model, "hidden_states", record)

    @property
    def texts(self) -> list[str]:
        return [text for call in self.processor.calls for text in call["text"]]


# -- what transformers computes directly ---------------------------------------------------------


_DIRECT: dict[Path, Any] = {}


def direct_model(folder: Path) -> Any:
    from transformers import Qwen2VLModel

    if folder not in _DIRECT:
        _DIRECT[folder] = Qwen2VLModel.from_pretrained(folder).eval()
    return _DIRECT[folder]


def direct_hidden(
    folder: Path, batch: dict[str, torch.Tensor], positions: torch.Tensor | None
) -> torch.Tensor:
    """Last-layer hidden states; positions None lets transformers compute M-RoPE itself."""
    with torch.inference_mode():
        fields = dict(batch)
        if positions is not None:
            fields.pop("mm_token_type_ids", None)
        out = direct_model(folder)(**fields, position_ids=positions, output_hidden_states=True)
    return out.hidden_states[-1]


def arange_positions(ids: torch.Tensor) -> torch.Tensor:
    return torch.arange(ids.shape[1]).expand(3, *ids.shape)


def unit(rows: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(rows.float(), dim=-1).numpy()


# -- prompts -------------------------------------------------------------------------------------

GME_TEXT = (
    "<|im_start|>system\nFind an image that matches the given text.<|im_end|>\n<|im_start|>user\n"
    "a crater<|im_end|>\n<|im_start|>assistant\n<|endoftext|>"
)
ASSISTANT_IMAGE = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n<|im_start|>assistant\n<|endoftext|>"
)
ASSISTANT_TEXT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "a crater<|im_end|>\n<|im_start|>assistant\n<|endoftext|>"
)
VLM2VEC_IMAGE = "<|image_pad|> Represent the given image with the following question: What is in the image"
EXPECTED_PROMPTS = {
    "gme": (GME_TEXT, ASSISTANT_IMAGE),
    "ops_mm": (ASSISTANT_TEXT, ASSISTANT_IMAGE),
    "vlm2vec": ("a crater", VLM2VEC_IMAGE),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_the_processor_gets_the_reference_prompts(
    models: dict[str, EmbeddingModel], family: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = models[family]
    spy = Spy(model, monkeypatch)
    model.embed_texts(["a crater"])
    embed(model, pictures(2))
    text, image = EXPECTED_PROMPTS[family]
    assert spy.texts == [text, image, image]


def test_instructions_follow_the_request_and_the_registry(
    models: dict[str, EmbeddingModel], folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    gme = models["gme"]
    spy = Spy(gme, monkeypatch)
    asked = PromptOptions(instruction="Retrieve Mars terrain.")
    changed = gme.embed_texts(["a crater"], asked)
    assert spy.texts[0].startswith("<|im_start|>system\nRetrieve Mars terrain.<|im_end|>\n")
    assert not np.allclose(changed, gme.embed_texts(["a crater"]), atol=1e-3)
    assert not np.allclose(embed(gme, pictures(1), asked), embed(gme, pictures(1)), atol=1e-3)
    ops = models["ops_mm"]
    assert not np.allclose(ops.embed_texts(["a crater"], asked), ops.embed_texts(["a crater"]), atol=1e-3)
    # VLM2Vec takes no instruction: refused before any forward pass.
    with pytest.raises(InvalidInput, match="no instruction"):
        models["vlm2vec"].check_options(asked)
    assert models["gme"].accepts_instruction and models["ops_mm"].accepts_instruction
    # A registry entry may set another default instruction.
    other = load_model(spec_for("ops_mm", folders["base"], text_instruction="Retrieve Mars terrain."), CPU)
    np.testing.assert_allclose(
        other.embed_texts(["a crater"]), ops.embed_texts(["a crater"], asked), atol=1e-6
    )


def test_prompt_cards_show_the_defaults(folders: dict[str, Path]) -> None:
    gme = prompt_card(spec_for("gme", folders["base"]))
    assert gme["text_instruction"] == "Find an image that matches the given text."
    assert gme["image_instruction"] == "You are a helpful assistant."
    ops = prompt_card(spec_for("ops_mm", folders["base"]))
    assert ops["text_instruction"] == ops["image_instruction"] == "You are a helpful assistant."
    assert prompt_card(spec_for("vlm2vec", folders["adapter"])) == {
        "image_prompt": VLM2VEC_IMAGE,
        "text_prompt": "{text}",
    }


# -- pooling, padding and positions ----------------------------------------------------------------


def test_gme_pools_the_trailing_endoftext_under_right_padding_with_sequential_positions(
    models: dict[str, EmbeddingModel], folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = models["gme"]
    spy = Spy(model, monkeypatch)
    texts = model.embed_texts(TEXTS)
    images = embed(model, pictures(3))
    for vectors, batch in zip((texts, images), spy.batches, strict=True):
        mask = batch["attention_mask"]
        assert not bool(mask[:, 0].eq(0).any()) and bool(mask[:, -1].eq(0).any()), "right padding"
        last = mask.sum(1) - 1
        rows = torch.arange(len(last))
        assert bool((batch["input_ids"][rows, last] == EOT).all())
        hidden = direct_hidden(folders["base"], batch, arange_positions(batch["input_ids"]))
        np.testing.assert_allclose(vectors, unit(hidden[rows, last]), atol=1e-5)
    # GME's code never computes M-RoPE: with transformers' own positions the image vectors differ.
    mrope = direct_hidden(folders["base"], spy.batches[1], None)
    last = spy.batches[1]["attention_mask"].sum(1) - 1
    assert not np.allclose(images, unit(mrope[torch.arange(3), last]), atol=1e-3)


def test_ops_mm_pools_the_last_column_under_left_padding_with_mrope(
    models: dict[str, EmbeddingModel], folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = models["ops_mm"]
    spy = Spy(model, monkeypatch)
    texts = model.embed_texts(TEXTS)
    images = embed(model, pictures(3))
    text_batch, image_batch = spy.batches
    for batch in spy.batches:
        assert bool(batch["attention_mask"][:, 0].eq(0).any()), "left padding"
        assert bool((batch["input_ids"][:, -1] == EOT).all())
    # Images: transformers' own M-RoPE (get_rope_index over the real tokens), as 4.57 computes it.
    np.testing.assert_allclose(
        images, unit(direct_hidden(folders["base"], image_batch, None)[:, -1]), atol=1e-5
    )
    sequential = direct_hidden(folders["base"], image_batch, arange_positions(image_batch["input_ids"]))
    assert not np.allclose(images, unit(sequential[:, -1]), atol=1e-3)
    # Texts: positions counted over the real tokens, as transformers 4.57 fills them.
    mask = text_batch["attention_mask"]
    counted = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1).expand(3, *mask.shape)
    np.testing.assert_allclose(
        texts, unit(direct_hidden(folders["base"], text_batch, counted)[:, -1]), atol=1e-5
    )


def test_vlm2vec_pools_the_last_real_token_with_sequential_positions(
    models: dict[str, EmbeddingModel], folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = models["vlm2vec"]
    spy = Spy(model, monkeypatch)
    texts = model.embed_texts(TEXTS)
    images = embed(model, pictures(3))
    merged = folders["merged"]  # the same weights as base + adapter
    for vectors, batch in zip((texts, images), spy.batches, strict=True):
        mask = batch["attention_mask"]
        assert bool(mask[:, -1].eq(0).any()), "the tiny tokenizer pads on the right"
        last = mask.sum(1) - 1
        hidden = direct_hidden(merged, batch, arange_positions(batch["input_ids"]))
        np.testing.assert_allclose(vectors, unit(hidden[torch.arange(3), last]), atol=1e-4)
    # The reference's first forward call of a process gets M-RoPE instead (VLM2Vec caches rope_deltas
    # after it); for images that is another vector, which is not reproduced.
    image_batch = spy.batches[1] | {
        "mm_token_type_ids": (spy.batches[1]["input_ids"] == tiny.TOKEN_ID["<|image_pad|>"]).int()
    }
    mrope = direct_hidden(merged, image_batch, None)
    last = image_batch["attention_mask"].sum(1) - 1
    assert not np.allclose(images, unit(mrope[torch.arange(3), last]), atol=1e-3)
    first = spy.batches[0]
    assert model.tokenizer.decode(first["input_ids"][0][first["attention_mask"][0] == 1]) == TEXTS[0]


def test_vlm2vec_under_left_padding_pools_the_last_column(
    folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the repository's tokenizer pads on the left, VLM2Vec's positions still run 0..L-1 over the
    padded row, pads included: a uniform shift of the real tokens' positions, which rotary attention
    does not see, so vectors stay batch-invariant; the pooled token is the last column."""
    model = load_model(spec_for("vlm2vec", folders["adapter"], padding_side="left"), CPU)
    spy = Spy(model, monkeypatch)
    batch_vectors = model.embed_texts(TEXTS)
    batch = spy.batches[0]
    assert bool(batch["attention_mask"][:, 0].eq(0).any()), "left padding"
    hidden = direct_hidden(folders["merged"], batch, arange_positions(batch["input_ids"]))
    np.testing.assert_allclose(batch_vectors, unit(hidden[:, -1]), atol=1e-4)
    np.testing.assert_allclose(batch_vectors[0], model.embed_texts(TEXTS[:1])[0], atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_vectors_are_unit_and_do_not_depend_on_the_batch(
    models: dict[str, EmbeddingModel], family: str
) -> None:
    model = models[family]
    texts = model.embed_texts(TEXTS)
    images = embed(model, pictures(4))
    assert (
        texts.shape == (3, model.dimension) and images.shape == (4, model.dimension) and model.dimension == 32
    )
    for vectors in (texts, images):
        assert vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(texts, np.concatenate([model.embed_texts([t]) for t in TEXTS]), atol=1e-4)
    np.testing.assert_allclose(images, np.concatenate([embed(model, [p]) for p in pictures(4)]), atol=1e-4)
    assert not np.allclose(images[0], images[1], atol=1e-3)
    assert model.count_tokens(TEXTS[:1]) >= 2


# -- images ----------------------------------------------------------------------------------------


def test_image_pre_resizes(models: dict[str, EmbeddingModel]) -> None:
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    picture = pictures(1, start=1)[0]  # 90 x 50
    gme = models["gme"].preprocess_image(picture)
    height, width = smart_resize(50, 90, factor=28, min_pixels=3136, max_pixels=16384 * 28 * 28)
    assert gme.size == (width, height) and gme.mode == "RGB" and width % 28 == height % 28 == 0
    ops = models["ops_mm"].preprocess_image(picture)
    height, width = smart_resize(50, 90, factor=28, min_pixels=tiny.MIN_PIXELS, max_pixels=tiny.MAX_PIXELS)
    assert ops.size == (width, height)
    vlm2vec = models["vlm2vec"]
    assert vlm2vec.preprocess_image(picture).size == (90, 50)
    assert vlm2vec.preprocess_image(picture.resize((20, 64))).size == (56, 56)


# -- LoRA layouts ----------------------------------------------------------------------------------


def test_the_adapter_is_merged_into_its_base(
    models: dict[str, EmbeddingModel], folders: dict[str, Path]
) -> None:
    adapter = models["vlm2vec"]
    merged = load_model(spec_for("vlm2vec", folders["merged"]), CPU)
    plain = load_model(spec_for("vlm2vec", folders["base"]), CPU)
    np.testing.assert_allclose(adapter.embed_texts(TEXTS), merged.embed_texts(TEXTS), atol=1e-4)
    np.testing.assert_allclose(embed(adapter, pictures(2)), embed(merged, pictures(2)), atol=1e-4)
    assert not np.allclose(adapter.embed_texts(TEXTS), plain.embed_texts(TEXTS), atol=1e-3)


def test_adapters_saved_for_either_module_layout_load(folders: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    new_layout = shutil.copytree(folders["adapter"], tmp_path / "new")
    weights = load_file(new_layout / "adapter_model.safetensors")
    renamed = {tiny.new_layout_key(k): v for k, v in weights.items()}
    assert renamed != weights
    save_file(renamed, new_layout / "adapter_model.safetensors")
    vectors = load_model(spec_for("vlm2vec", new_layout), CPU).embed_texts(TEXTS)
    reference = load_model(spec_for("vlm2vec", folders["merged"]), CPU).embed_texts(TEXTS)
    np.testing.assert_allclose(vectors, reference, atol=1e-4)


def test_an_adapter_that_does_not_fit_is_refused(folders: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    broken = shutil.copytree(folders["adapter"], tmp_path / "broken")
    weights = load_file(broken / "adapter_model.safetensors")
    save_file(
        {k.replace(".layers.", ".blocks."): v for k, v in weights.items()},
        broken / "adapter_model.safetensors",
    )
    with pytest.raises(ModelLoadFailed, match="adapter"):
        load_model(spec_for("vlm2vec", broken), CPU)
    (broken / "adapter_model.safetensors").unlink()
    shutil.copy(folders["base"] / "model.safetensors", broken / "model.safetensors")
    with pytest.raises(ModelLoadFailed, match="no adapter weights"):
        load_model(spec_for("vlm2vec", broken), CPU)


def test_a_dora_adapter_merges(folders: dict[str, Path], tmp_path: Path) -> None:
    dora = tiny.write_adapter(tmp_path / "dora", folders["base"], use_dora=True)
    assert json.loads((dora / "adapter_config.json").read_text())["use_dora"] is True
    model = load_model(spec_for("vlm2vec", dora), CPU)
    plain = load_model(spec_for("vlm2vec", folders["base"]), CPU)
    assert not np.allclose(model.embed_texts(TEXTS), plain.embed_texts(TEXTS), atol=1e-3)


def test_the_base_model_comes_from_a_pinned_hub_snapshot(
    models: dict[str, EmbeddingModel],
    folders: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cached = serving.pinned_snapshot(tmp_path, "tiny/qwen2-vl", folders["base"], monkeypatch)
    adapter = shutil.copytree(folders["adapter"], tmp_path / "adapter")
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(
        json.dumps(config | {"base_model_name_or_path": "tiny/qwen2-vl"})
    )
    hub = load_model(spec_for("vlm2vec", adapter, base_revision=REVISION), cached)
    np.testing.assert_allclose(hub.embed_texts(TEXTS), models["vlm2vec"].embed_texts(TEXTS), atol=1e-6)
    with pytest.raises(ModelLoadFailed, match="not in the local cache"):
        load_model(spec_for("vlm2vec", adapter, base_revision="f" * 40), cached)


# -- the HTTP service -------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_the_service_returns_the_in_process_vectors(
    service: TestClient, models: dict[str, EmbeddingModel], family: str
) -> None:
    blobs = png_files(2, step=9)
    served = served_images(service, f"tiny-{family}", blobs)
    np.testing.assert_allclose(served, embed(models[family], decode(blobs)), atol=1e-5)
    texts = served_texts(service, f"tiny-{family}", TEXTS)
    np.testing.assert_allclose(texts, models[family].embed_texts(TEXTS), atol=1e-5)
    if family == "vlm2vec":
        refused = service.post(
            "/v1/embeddings", json={"model": f"tiny-{family}", "input": TEXTS, "instruction": "x"}
        )
        assert refused.status_code == 422
    else:
        asked = served_texts(service, f"tiny-{family}", TEXTS[:1], instruction="x")
        expected = models[family].embed_texts(TEXTS[:1], PromptOptions(instruction="x"))
        np.testing.assert_allclose(asked[0], expected[0], atol=1e-5)


def test_gme_reads_max_length_and_image_tokens_from_its_config(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    # GME's config class takes max_length, min_image_tokens and max_image_tokens from config.json;
    # registry options still win.
    folder = tmp_path / "gme"
    shutil.copytree(folders["base"], folder)
    config = json.loads((folder / "config.json").read_text())
    config |= {"max_length": 12, "min_image_tokens": 4, "max_image_tokens": 9}
    (folder / "config.json").write_text(json.dumps(config))
    plain = {k: v for k, v in OPTIONS["gme"].items() if k not in ("min_pixels", "max_pixels")}
    spec = serving.spec("g", "gme", f"local-dir:{folder}", modalities=BOTH, options=plain)
    model = load_model(spec, CPU)
    assert model.text_kwargs()["max_length"] == 12  # type: ignore[attr-defined]
    size = model.processor.image_processor.size  # type: ignore[attr-defined]
    assert (size.shortest_edge, size.longest_edge) == (4 * 28 * 28, 9 * 28 * 28)
    long_text = " ".join(["crater"] * 40)
    assert not np.allclose(
        model.embed_texts([long_text]), models_default_gme(folders).embed_texts([long_text])
    )
    chosen = load_model(
        serving.spec(
            "g", "gme", f"local-dir:{folder}", modalities=BOTH, options=plain | {"max_length": 1800}
        ),
        CPU,
    )
    assert chosen.text_kwargs()["max_length"] == 1800  # type: ignore[attr-defined]


def models_default_gme(folders: dict[str, Path]) -> EmbeddingModel:
    return load_model(spec_for("gme", folders["base"]), CPU)

"""jina-embeddings-v4 offline: a tiny random Qwen2.5-VL with task LoRA adapters, saved as the hub
repository lays it out, loaded through `load_model` and checked against the reference's rules."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from marsbench.encoder.adapters import RuntimeOptions, load_model
from marsbench.encoder.adapters.base import DEFAULT_PROMPT, PromptOptions
from marsbench.encoder.adapters.mllm.jina_v4 import IMAGE_PROMPT, JinaV4Embedder
from marsbench.encoder.app import create_app
from marsbench.encoder.core.engine import EncoderEngine
from marsbench.encoder.core.errors import InvalidInput, ModelLoadFailed
from marsbench.encoder.core.registry import ModelSpec
from marsbench.encoder.settings import EncoderSettings
from marsbench.schemas.embeddings import BINARY_DIM_HEADER
from tests.conftest import png_bytes
from tests.encoder.mllm import tiny_qwen_vl

CPU = RuntimeOptions(device="cpu")
OPTIONS = {"task": "retrieval", "text_prompt": "query"}
TEXTS = ["a crater", "a field of yardangs on Mars seen from orbit", "an alluvial fan"]


def spec_for(folder: Path, **options: str) -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "name": "tiny-jina",
            "family": "jina_v4",
            "source": f"local-dir:{folder}",
            "options": OPTIONS | options,
        }
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_qwen_vl.write_tiny_jina_v4(tmp_path_factory.mktemp("jina") / "repo")


@pytest.fixture(scope="module")
def model(folder: Path) -> JinaV4Embedder:
    loaded = load_model(spec_for(folder), CPU)
    assert isinstance(loaded, JinaV4Embedder)
    return loaded


def images(n: int) -> list[Image.Image]:
    return [
        Image.open(io.BytesIO(png_bytes(i, size=40 + 9 * i, pattern=i % 3))).convert("RGB") for i in range(n)
    ]


def embed(
    model: JinaV4Embedder, pictures: list[Image.Image], options: PromptOptions = DEFAULT_PROMPT
) -> np.ndarray:
    return model.embed_prepared([model.preprocess_image(p) for p in pictures], options)


class Spy:
    """Records what the embedder hands its processor."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self.processor(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.processor, name)


def test_prompts_sent_to_the_processor(model: JinaV4Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy(model.processor)
    monkeypatch.setattr(model, "processor", spy)
    model.embed_texts(["a crater", "dunes"])
    model.embed_texts(["a crater"], PromptOptions(prompt_name="passage"))
    embed(model, images(2))
    texts, passages, pictures = spy.calls
    assert texts["text"] == ["Query: a crater", "Query: dunes"]
    assert passages["text"] == ["Passage: a crater"]
    assert pictures["text"] == [IMAGE_PROMPT] * 2
    assert IMAGE_PROMPT == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|>\n"
    )
    assert texts["truncation"] is True and texts["max_length"] == 8192
    assert model.prompts() == {
        "task": "retrieval",
        "text_prompt": "query",
        "text_prefix": "Query: ",
        "image_prompt": IMAGE_PROMPT,
    }


def _direct(model: JinaV4Embedder, inputs: Any) -> torch.Tensor:
    """The reference's rule written out: positions from get_rope_index, last hidden state, the
    vision span mean for images and the attention-mask mean for texts."""
    module = model.module
    config = module.config
    with torch.inference_mode():
        positions, _ = module.get_rope_index(
            inputs["input_ids"],
            mm_token_type_ids=inputs["mm_token_type_ids"],
            image_grid_thw=inputs.get("image_grid_thw"),
            attention_mask=inputs["attention_mask"],
        )
        hidden = module(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            position_ids=positions,
            pixel_values=inputs.get("pixel_values"),
            image_grid_thw=inputs.get("image_grid_thw"),
        ).last_hidden_state
    rows = []
    for i, ids in enumerate(inputs["input_ids"]):
        starts = (ids == config.vision_start_token_id).nonzero().flatten()
        if len(starts):
            end = int((ids == config.vision_end_token_id).nonzero().flatten()[0])
            rows.append(hidden[i, int(starts[0]) : end + 1].mean(dim=0))
        else:
            rows.append(hidden[i, inputs["attention_mask"][i].bool()].mean(dim=0))
    return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


@pytest.mark.parametrize("side", ["left", "right"])
def test_pooling_matches_direct_hidden_states(model: JinaV4Embedder, side: str) -> None:
    model.tokenizer.padding_side = side
    try:
        texts = model.embed_texts(TEXTS)
        pictures = embed(model, images(3))
        text_inputs = model.processor(text=[f"Query: {t}" for t in TEXTS], padding=True, return_tensors="pt")
        picture_inputs = model.processor(
            text=[IMAGE_PROMPT] * 3, images=images(3), padding=True, return_tensors="pt"
        )
    finally:
        model.tokenizer.padding_side = model.padding_side
    mask = text_inputs["attention_mask"]
    assert bool((mask[:, 0] == 0).any() if side == "left" else (mask[:, -1] == 0).any()), "the batch must pad"
    np.testing.assert_allclose(texts, _direct(model, text_inputs).numpy(), atol=1e-5)
    np.testing.assert_allclose(pictures, _direct(model, picture_inputs).numpy(), atol=1e-5)
    # Padding-aware positions and mean pooling: the side does not matter.
    np.testing.assert_allclose(texts, model.embed_texts(TEXTS), atol=1e-5)


def test_vectors_are_normalised_and_batch_invariant(model: JinaV4Embedder) -> None:
    texts = model.embed_texts(TEXTS)
    pictures = embed(model, images(3))
    assert texts.shape == pictures.shape == (3, model.dimension) == (3, 32)
    for vectors in (texts, pictures):
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(texts, np.concatenate([model.embed_texts([t]) for t in TEXTS]), atol=1e-5)
    alone = np.concatenate([embed(model, [p]) for p in images(3)])
    np.testing.assert_allclose(pictures, alone, atol=1e-5)
    assert not np.allclose(pictures[0], pictures[1])


def test_prompt_names_change_the_vector_and_instructions_are_refused(model: JinaV4Embedder) -> None:
    query = model.embed_texts(["a crater"])
    passage = model.embed_texts(["a crater"], PromptOptions(prompt_name="passage"))
    assert not np.allclose(query, passage)
    np.testing.assert_allclose(query, model.embed_texts(["a crater"], PromptOptions(prompt_name="query")))
    with pytest.raises(InvalidInput, match="instruction"):
        model.check_options(PromptOptions(instruction="Find an image."))
    with pytest.raises(InvalidInput, match="query, passage"):
        model.check_options(PromptOptions(prompt_name="document"))


def test_the_task_adapter_is_merged(model: JinaV4Embedder, folder: Path) -> None:
    """The merged weight is the base weight plus (alpha / r) B A of the task's tensors."""
    from safetensors.torch import load_file
    from transformers import Qwen2_5_VLModel

    base = Qwen2_5_VLModel.from_pretrained(folder)
    tensors = load_file(folder / "adapters" / "retrieval" / "adapter_model.safetensors")
    a = tensors["base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"]
    b = tensors["base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"]
    merged = model.module.language_model.layers[1].self_attn.q_proj.weight
    expected = base.language_model.layers[1].self_attn.q_proj.weight + (8 / 4) * b @ a
    torch.testing.assert_close(merged, expected, atol=1e-5, rtol=1e-5)
    vision = load_file(folder / "adapters" / "retrieval" / "adapter_model.safetensors")
    assert "base_model.model.visual.blocks.0.mlp.up_proj.lora_A.weight" in vision
    assert not torch.equal(
        model.module.visual.blocks[0].mlp.up_proj.weight, base.visual.blocks[0].mlp.up_proj.weight
    )


def test_tasks_and_adapter_layouts(model: JinaV4Embedder, folder: Path, tmp_path: Path) -> None:
    code = load_model(spec_for(folder, task="code"), CPU)
    assert not np.allclose(code.embed_texts(["a crater"]), model.embed_texts(["a crater"]))
    # The older single-adapter layout (every task in one file) gives the same retrieval model.
    multi = tiny_qwen_vl.write_tiny_jina_v4(tmp_path / "multi", layout="multi", legacy_weights=False)
    other = load_model(spec_for(multi), CPU)
    np.testing.assert_allclose(other.embed_texts(TEXTS), model.embed_texts(TEXTS), atol=1e-5)
    np.testing.assert_allclose(embed(other, images(2)), embed(model, images(2)), atol=1e-5)
    with pytest.raises(ModelLoadFailed, match="no adapter for task"):
        load_model(spec_for(folder, task="clustering"), CPU)
    with pytest.raises(ModelLoadFailed, match="no weights for task"):
        load_model(spec_for(multi, task="clustering"), CPU)


@pytest.fixture(scope="module")
def service(folder: Path) -> Iterator[TestClient]:
    engine = EncoderEngine(
        EncoderSettings(max_wait_ms=1, device="cpu"), specs={"tiny-jina": spec_for(folder)}
    )
    with TestClient(create_app(engine=engine)) as client:
        yield client


def test_the_service_returns_the_in_process_vectors(service: TestClient, model: JinaV4Embedder) -> None:
    pictures = [png_bytes(i, size=40 + 9 * i, pattern=i % 3) for i in range(2)]
    files = [("images", (f"{i}.png", data, "image/png")) for i, data in enumerate(pictures)]
    response = service.post("/v1/embeddings/images", data={"model": "tiny-jina"}, files=files)
    assert response.status_code == 200, response.text
    served = np.frombuffer(response.content, dtype="<f4").reshape(2, int(response.headers[BINARY_DIM_HEADER]))
    np.testing.assert_allclose(served, embed(model, images(2)), atol=1e-6)
    for options in ({}, {"prompt_name": "passage"}):
        body = service.post("/v1/embeddings", json={"model": "tiny-jina", "input": ["a crater"], **options})
        assert body.status_code == 200, body.text
        expected = model.embed_texts(["a crater"], PromptOptions(**options))[0]
        np.testing.assert_allclose(body.json()["data"][0]["embedding"], expected, atol=1e-6)
    refused = service.post(
        "/v1/embeddings", json={"model": "tiny-jina", "input": ["x"], "instruction": "Find."}
    )
    assert refused.status_code == 422

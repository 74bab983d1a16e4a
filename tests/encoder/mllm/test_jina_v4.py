"""jina-embeddings-v4 offline: a tiny random Qwen2.5-VL with task LoRA adapters, saved as the hub
repository lays it out, loaded through `load_model` and checked against the reference's rules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from marsbench.encoder.adapters import load_model
from marsbench.encoder.adapters.base import PromptOptions, RuntimeOptions
from marsbench.encoder.adapters.mllm.jina_v4 import IMAGE_PROMPT, JinaV4Embedder
from marsbench.encoder.errors import InvalidInput, ModelLoadFailed
from marsbench.encoder.registry import ModelSpec
from tests.encoder import serving
from tests.encoder.mllm import tiny_qwen_vl
from tests.encoder.serving import CPU, ProcessorSpy, embed, png_files, served_images, served_texts

OPTIONS = {"task": "retrieval", "text_prompt": "query"}
TEXTS = ["a crater", "a field of yardangs on Mars seen from orbit", "an alluvial fan"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_qwen_vl.write_tiny_jina_v4(tmp_path_factory.mktemp("jina") / "repo")


def spec_for(folder: Path, **options: str) -> ModelSpec:
    return serving.spec("tiny-jina", "jina_v4", f"local-dir:{folder}", options=OPTIONS | options)


@pytest.fixture(scope="module")
def model(folder: Path) -> JinaV4Embedder:
    return serving.load(spec_for(folder), JinaV4Embedder)


def images(n: int) -> list[Image.Image]:
    return serving.images(n, step=9)


def test_prompts_sent_to_the_processor(model: JinaV4Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = ProcessorSpy(model.processor)
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
    with serving.padding_on(model, side):
        texts = model.embed_texts(TEXTS)
        pictures = embed(model, images(3))
        text_inputs = model.processor(text=[f"Query: {t}" for t in TEXTS], padding=True, return_tensors="pt")
        picture_inputs = model.processor(
            text=[IMAGE_PROMPT] * 3, images=images(3), padding=True, return_tensors="pt"
        )
    serving.assert_padded_on(side, text_inputs["attention_mask"])
    np.testing.assert_allclose(texts, _direct(model, text_inputs).numpy(), atol=1e-5)
    np.testing.assert_allclose(pictures, _direct(model, picture_inputs).numpy(), atol=1e-5)
    # Padding-aware positions and mean pooling: the side does not matter.
    np.testing.assert_allclose(texts, model.embed_texts(TEXTS), atol=1e-5)


def test_vectors_are_normalised_and_batch_invariant(model: JinaV4Embedder) -> None:
    serving.assert_unit_and_batch_invariant(model, TEXTS, images(3), dimension=32)


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
    with serving.serve({"tiny-jina": spec_for(folder)}) as client:
        yield client


def test_the_service_returns_the_in_process_vectors(service: TestClient, model: JinaV4Embedder) -> None:
    served = served_images(service, "tiny-jina", png_files(2, step=9))
    np.testing.assert_allclose(served, embed(model, images(2)), atol=1e-6)
    for options in ({}, {"prompt_name": "passage"}):
        texts = served_texts(service, "tiny-jina", ["a crater"], **options)
        expected = model.embed_texts(["a crater"], PromptOptions(**options))[0]
        np.testing.assert_allclose(texts[0], expected, atol=1e-6)
    refused = service.post(
        "/v1/embeddings", json={"model": "tiny-jina", "input": ["x"], "instruction": "Find."}
    )
    assert refused.status_code == 422


def test_the_reference_cpu_dtype_is_bf16_autocast_over_fp32_weights(
    model: JinaV4Embedder, folder: Path
) -> None:
    # The remote code autocasts to bf16 on every device; on a CPU marsbench does so only when asked.
    spec = serving.spec("tiny-jina", "jina_v4", f"local-dir:{folder}", options=OPTIONS, cpu_precision="bf16")
    reference = load_model(spec, RuntimeOptions(device="cpu", cpu_precision="reference"))
    assert isinstance(reference, JinaV4Embedder)
    assert next(reference.module.parameters()).dtype == torch.float32
    with reference.autocast():
        assert torch.is_autocast_cpu_enabled() and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with model.autocast():
        assert not torch.is_autocast_cpu_enabled()
    fp32, bf16 = model.embed_texts(TEXTS), reference.embed_texts(TEXTS)
    assert bf16.dtype == np.float32 and 1e-4 < np.abs(fp32 - bf16).max() < 0.1

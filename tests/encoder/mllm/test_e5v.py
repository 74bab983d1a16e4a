"""E5-V on a tiny random LLaVA-Next: prompts, the `[:, -1]` pooling rule under both padding sides,
normalisation, batch composition, the refused instruction, hub snapshots and the HTTP service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from marsbench.encoder.adapters import load_model, prompt_card
from marsbench.encoder.adapters.base import PromptOptions
from marsbench.encoder.adapters.mllm.e5v import E5VEmbedder
from marsbench.encoder.errors import InvalidInput
from marsbench.encoder.registry import ModelSpec
from tests.encoder import serving
from tests.encoder.mllm import tiny_e5v
from tests.encoder.serving import REVISION, ProcessorSpy, decode, png_files, served_images, served_texts
from tests.encoder.serving import embed as embed_images

# Written out here, not imported, so that a change to the adapter's strings fails the test.
TEXT_PROMPT = (
    "<|start_header_id|>user<|end_header_id|>\n\n{}\nSummary above sentence in one word: "
    "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n \n"
)
IMAGE_PROMPT = (
    "<|start_header_id|>user<|end_header_id|>\n\n<image>\nSummary above image in one word: "
    "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n \n"
)
# Three lengths, as the harness's three landform templates are embedded in one call.
TEXTS = ["a crater", "a satellite photo of alluvial fan.", "a high-resolution remote sensing image of dune"]
SIDES = ("right", "left")


def spec_for(name: str, source: str, **extra: Any) -> ModelSpec:
    return serving.spec(name, "e5v", source, **extra)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tokenizer as saved (no padding side: right) and one whose config says left."""
    root = tmp_path_factory.mktemp("e5v")
    return {
        "right": tiny_e5v.write_tiny_e5v(root / "right"),
        "left": tiny_e5v.write_tiny_e5v(root / "left", padding_side="left"),
    }


@pytest.fixture(scope="module")
def models(folders: dict[str, Path]) -> dict[str, E5VEmbedder]:
    return {
        side: serving.load(spec_for(f"tiny-e5v-{side}", f"local-dir:{f}"), E5VEmbedder)
        for side, f in folders.items()
    }


@pytest.fixture(scope="module")
def service(folders: dict[str, Path]) -> Iterator[TestClient]:
    specs = {
        f"tiny-e5v-{side}": spec_for(f"tiny-e5v-{side}", f"local-dir:{f}") for side, f in folders.items()
    }
    with serving.serve(specs, max_loaded_models=4) as client:
        yield client


def pictures() -> list[Image.Image]:
    """Three aspect ratios, so that the any-res grids and the image token counts differ."""
    sizes = [(40, 40), (60, 30), (30, 64)]
    return [Image.new("RGB", size, (40 + 60 * i, 90, 200 - 50 * i)) for i, size in enumerate(sizes)]


def reference_vectors(
    folder: Path, side: str, prompts: list[str], images: list[Image.Image] | None
) -> np.ndarray:
    """The published procedure, straight on transformers: the processor with patch size 14, a plain
    forward pass, the last layer at the batch's last position, L2-normalised."""
    from transformers import LlavaNextForConditionalGeneration, LlavaNextProcessor

    processor = LlavaNextProcessor.from_pretrained(folder)
    processor.patch_size = 14
    assert processor.tokenizer.padding_side == side
    model = LlavaNextForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    inputs = processor(text=prompts, images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        hidden = model(**inputs, output_hidden_states=True, return_dict=True).hidden_states[-1]
    return torch.nn.functional.normalize(hidden[:, -1, :], p=2, dim=-1).numpy()


def test_the_processor_gets_the_verbatim_llama3_prompts(
    models: dict[str, E5VEmbedder], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = models["right"]
    spy = ProcessorSpy(model.processor)
    monkeypatch.setattr(model, "processor", spy)
    model.embed_texts(["a crater", "glacier-like form"])
    embed_images(model, pictures()[:2])
    text_call, image_call = spy.calls
    assert text_call["text"] == [TEXT_PROMPT.format("a crater"), TEXT_PROMPT.format("glacier-like form")]
    assert text_call.get("images") is None and text_call["padding"] is True
    assert image_call["text"] == [IMAGE_PROMPT, IMAGE_PROMPT]
    assert len(image_call["images"]) == 2 and image_call["padding"] is True
    # The tokenizer puts <|begin_of_text|> in front once (Llama-3's post-processor); the prompt has none.
    bos = model.tokenizer.convert_tokens_to_ids("<|begin_of_text|>")
    for output in spy.outputs:
        ids = output["input_ids"]
        assert (ids[:, 0] == bos).all() and ((ids == bos).sum(dim=1) == 1).all()


def test_the_sentence_slot_is_replaced_as_str_replace_does(models: dict[str, E5VEmbedder]) -> None:
    prompts = models["right"].text_prompts(["{} and {0}", "<sent> twice"], PromptOptions())
    assert prompts == [TEXT_PROMPT.replace("{}", "{} and {0}"), TEXT_PROMPT.replace("{}", "<sent> twice")]


def test_the_prompt_card_shows_both_prompts(models: dict[str, E5VEmbedder]) -> None:
    card = {"text_prompt": TEXT_PROMPT.format("<sent>"), "image_prompt": IMAGE_PROMPT}
    assert prompt_card(spec_for("e5-v", "hf-hub:royokong/e5-v")) == card
    assert models["left"].prompts() == card


def test_the_patch_size_the_hub_processor_lacks_is_set(
    folders: dict[str, Path], models: dict[str, E5VEmbedder]
) -> None:
    from transformers import LlavaNextProcessor

    assert not (folders["right"] / "processor_config.json").exists()
    assert LlavaNextProcessor.from_pretrained(folders["right"]).patch_size is None
    assert models["right"].processor.patch_size == 14


@pytest.mark.parametrize("side", SIDES)
def test_the_padding_side_is_the_tokenizers_own(models: dict[str, E5VEmbedder], side: str) -> None:
    model = models[side]
    assert model.tokenizer.padding_side == side
    mask = model.tokenizer(model.text_prompts(TEXTS, PromptOptions()), padding=True)["attention_mask"]
    column = 0 if side == "left" else -1
    assert [row[column] for row in mask] != [1, 1, 1]  # the batch is padded on that side


@pytest.mark.parametrize("side", SIDES)
def test_vectors_are_the_last_column_of_the_last_layer(
    folders: dict[str, Path], models: dict[str, E5VEmbedder], side: str
) -> None:
    texts = models[side].embed_texts(TEXTS)
    expected = reference_vectors(folders[side], side, [TEXT_PROMPT.format(t) for t in TEXTS], None)
    np.testing.assert_allclose(texts, expected, atol=1e-5)
    images = embed_images(models[side], pictures())
    expected = reference_vectors(folders[side], side, [IMAGE_PROMPT] * 3, pictures())
    np.testing.assert_allclose(images, expected, atol=1e-5)


@pytest.mark.parametrize("side", SIDES)
def test_vectors_are_unit_length(models: dict[str, E5VEmbedder], side: str) -> None:
    vectors = np.concatenate([models[side].embed_texts(TEXTS), embed_images(models[side], pictures())])
    assert vectors.dtype == np.float32 and vectors.shape[1] == models[side].dimension == 32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_left_padding_keeps_a_vector_whatever_its_batch(models: dict[str, E5VEmbedder]) -> None:
    model = models["left"]
    batch = model.embed_texts(TEXTS)
    alone = np.concatenate([model.embed_texts([text]) for text in TEXTS])
    np.testing.assert_allclose(batch, alone, atol=1e-5)
    batch = embed_images(model, pictures())
    alone = np.concatenate([embed_images(model, [picture]) for picture in pictures()])
    np.testing.assert_allclose(batch, alone, atol=1e-5)


def test_right_padding_pools_the_pad_of_shorter_rows_as_the_reference_does(
    models: dict[str, E5VEmbedder],
) -> None:
    """`[:, -1]` under right padding is not batch-invariant: the longest row keeps its vector, a
    shorter one is pooled at a pad token. That is the reference's rule, reproduced on purpose."""
    model = models["right"]
    batch = model.embed_texts(TEXTS)
    alone = np.concatenate([model.embed_texts([text]) for text in TEXTS])
    lengths = np.array(model.tokenizer(model.text_prompts(TEXTS, PromptOptions()))["input_ids"], dtype=object)
    longest = int(np.argmax([len(ids) for ids in lengths]))
    np.testing.assert_allclose(batch[longest], alone[longest], atol=1e-5)
    for row in set(range(len(TEXTS))) - {longest}:
        assert not np.allclose(batch[row], alone[row], atol=1e-3)
    # Images of one size give one token count: nothing is padded and nothing changes.
    same = [Image.new("RGB", (50, 40), (20 * i, 60, 90)) for i in range(3)]
    alone = np.concatenate([embed_images(model, [picture]) for picture in same])
    np.testing.assert_allclose(embed_images(model, same), alone, atol=1e-5)


def test_an_instruction_or_prompt_name_is_refused(models: dict[str, E5VEmbedder]) -> None:
    model = models["right"]
    assert not model.accepts_instruction and model.prompt_names == ()
    with pytest.raises(InvalidInput, match="takes no instruction"):
        model.check_options(PromptOptions(instruction="Represent the terrain"))
    with pytest.raises(InvalidInput, match="no prompt named"):
        model.check_options(PromptOptions(prompt_name="query"))


def test_a_pinned_hub_snapshot_loads_like_the_folder(
    folders: dict[str, Path], models: dict[str, E5VEmbedder], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = serving.pinned_snapshot(tmp_path, "tiny/e5-v", folders["right"], monkeypatch)
    hub = load_model(spec_for("tiny-e5v-hub", "hf-hub:tiny/e5-v", revision=REVISION), cached)
    np.testing.assert_array_equal(hub.embed_texts(TEXTS), models["right"].embed_texts(TEXTS))


@pytest.mark.parametrize("side", SIDES)
def test_the_service_returns_the_in_process_vectors(
    service: TestClient, models: dict[str, E5VEmbedder], side: str
) -> None:
    name = f"tiny-e5v-{side}"
    blobs = png_files(3, step=7)  # 40, 47 and 54 pixels a side
    served = served_images(service, name, blobs)
    np.testing.assert_allclose(served, embed_images(models[side], decode(blobs)), atol=1e-5)
    texts = served_texts(service, name, ["a crater"])
    np.testing.assert_allclose(texts[0], models[side].embed_texts(["a crater"])[0], atol=1e-5)


def test_the_service_refuses_an_instruction(service: TestClient) -> None:
    body = {"model": "tiny-e5v-left", "input": ["a crater"], "instruction": "Represent the terrain"}
    response = service.post("/v1/embeddings", json=body)
    assert response.status_code == 422
    assert "takes no instruction" in response.json()["error"]["message"]


def test_under_right_padding_each_request_is_embedded_as_its_own_batch(
    service: TestClient, models: dict[str, E5VEmbedder]
) -> None:
    """The pooled pad makes a short text depend on its batch-mates, so the service never merges
    concurrent requests for such a model: each text gets the vector it has when sent alone."""
    import concurrent.futures

    assert models["right"].batch_invariant is False and models["left"].batch_invariant is True

    def embed(text: str) -> np.ndarray:
        return served_texts(service, "tiny-e5v-right", [text])[0]

    with concurrent.futures.ThreadPoolExecutor(len(TEXTS)) as pool:
        served = list(pool.map(embed, TEXTS))
    for text, vector in zip(TEXTS, served, strict=True):
        np.testing.assert_allclose(vector, models["right"].embed_texts([text])[0], atol=1e-5)

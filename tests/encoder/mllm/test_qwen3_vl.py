"""Qwen3-VL-Embedding offline: a tiny random Qwen3-VL saved as the hub repository lays it out
(the embedding wrapper's `model.*` weights), loaded through `load_model` and checked against the
reference's rules."""

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

from marsbench.encoder.adapters.base import PromptOptions
from marsbench.encoder.adapters.mllm.qwen3_vl import Qwen3VlEmbedder, smart_resize
from marsbench.encoder.registry import ModelSpec
from tests.encoder import serving
from tests.encoder.mllm import tiny_qwen_vl
from tests.encoder.serving import ProcessorSpy, embed, png_files, rgba_png, served_images, served_texts

DEFAULT = "Represent the user's input."
OPTIONS = {
    "text_instruction": DEFAULT,
    "image_instruction": DEFAULT,
    "min_pixels": 4096,
    "max_pixels": 1843200,
}
TEXTS = ["a crater", "a field of yardangs on Mars seen from orbit", "an alluvial fan"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_qwen_vl.write_tiny_qwen3_vl_embedding(tmp_path_factory.mktemp("qwen3") / "repo")


def spec_for(folder: Path) -> ModelSpec:
    return serving.spec("tiny-qwen3", "qwen3_vl_embedding", f"local-dir:{folder}", options=OPTIONS)


@pytest.fixture(scope="module")
def model(folder: Path) -> Qwen3VlEmbedder:
    return serving.load(spec_for(folder), Qwen3VlEmbedder)


def images(n: int) -> list[Image.Image]:
    return serving.images(n, step=30)


def test_the_prompts_are_the_rendered_chat_template(
    model: Qwen3VlEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = ProcessorSpy(model.processor)
    monkeypatch.setattr(model, "processor", spy)
    model.embed_texts(["a crater"])
    embed(model, images(1))
    model.embed_texts(["a crater"], PromptOptions(instruction="  Retrieve images of the landform "))
    model.embed_texts(["a crater"], PromptOptions(instruction="Which landform?"))
    text, image, custom, question = (call["text"] for call in spy.calls)
    assert text == [
        "<|im_start|>system\nRepresent the user's input.<|im_end|>\n"
        "<|im_start|>user\na crater<|im_end|>\n<|im_start|>assistant\n"
    ]
    assert image == [
        "<|im_start|>system\nRepresent the user's input.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n<|im_start|>assistant\n"
    ]
    assert custom[0].startswith("<|im_start|>system\nRetrieve images of the landform.<|im_end|>\n")
    assert question[0].startswith("<|im_start|>system\nWhich landform?<|im_end|>\n")
    assert spy.calls[1]["do_resize"] is False
    assert spy.calls[0]["truncation"] is True and spy.calls[0]["max_length"] == 8192
    assert model.prompts() == {"text_instruction": DEFAULT, "image_instruction": DEFAULT}


def test_images_are_pre_resized_to_multiples_of_32(
    model: Qwen3VlEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert smart_resize(100, 200, 32, 4096, 1843200) == (96, 192)
    assert smart_resize(20, 30, 32, 4096, 1843200) == (64, 96)  # up to the 4096-pixel floor
    assert smart_resize(3000, 2000, 32, 4096, 1843200) == (1632, 1088)  # down under the ceiling
    wide = Image.new("RGB", (200, 100), (10, 120, 200))
    prepared = model.preprocess_image(wide)
    assert prepared.size == (192, 96) and prepared.mode == "RGB"
    spy = ProcessorSpy(model.processor)
    monkeypatch.setattr(model, "processor", spy)
    model.embed_prepared([prepared])
    # do_resize=False: the grid is the pre-resized image's (96/16 x 192/16 patches), not the
    # tiny processor's own 64x64 bound.
    assert spy.last["image_grid_thw"].tolist() == [[1, 6, 12]]
    assert int((spy.last["input_ids"] == tiny_qwen_vl.TOKEN_IDS["<|image_pad|>"]).sum()) == 18
    transparent = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    assert model.preprocess_image(transparent).getpixel((5, 5)) == (255, 255, 255)


def _direct(model: Qwen3VlEmbedder, inputs: Any) -> torch.Tensor:
    """The last hidden state at each row's last real token, from a plain Qwen3VLModel forward."""
    with torch.inference_mode():
        hidden = model.module(**inputs).last_hidden_state
    mask = inputs["attention_mask"]
    last = [int(row.nonzero().max()) for row in mask]
    return torch.nn.functional.normalize(hidden[torch.arange(len(last)), last], dim=-1)


@pytest.mark.parametrize("side", ["right", "left"])
def test_pooling_matches_direct_hidden_states(model: Qwen3VlEmbedder, side: str) -> None:
    with serving.padding_on(model, side):
        texts = model.embed_texts(TEXTS)
        pictures = [model.preprocess_image(p) for p in images(3)]
        vectors = model.embed_prepared(pictures)
        text_inputs = model.processor(
            text=model.text_prompts(TEXTS, PromptOptions()), padding=True, return_tensors="pt"
        )
        picture_inputs = model.processor(
            text=model.image_prompts(3, PromptOptions()),
            images=pictures,
            padding=True,
            do_resize=False,
            return_tensors="pt",
        )
    serving.assert_padded_on(side, text_inputs["attention_mask"])
    np.testing.assert_allclose(texts, _direct(model, text_inputs).numpy(), atol=1e-5)
    np.testing.assert_allclose(vectors, _direct(model, picture_inputs).numpy(), atol=1e-5)


def test_vectors_are_normalised_and_batch_invariant(model: Qwen3VlEmbedder) -> None:
    # Right padding and the last real token: a row does not see the batch's padding.
    serving.assert_unit_and_batch_invariant(model, TEXTS, images(3), dimension=32)


def test_instructions_change_the_vector(model: Qwen3VlEmbedder) -> None:
    default = model.embed_texts(["a crater"])
    np.testing.assert_allclose(default, model.embed_texts(["a crater"], PromptOptions(instruction=DEFAULT)))
    other = model.embed_texts(["a crater"], PromptOptions(instruction="Retrieve images of the landform"))
    assert not np.allclose(default, other)
    # The reference appends the missing full stop, so both spellings are one prompt.
    np.testing.assert_allclose(
        other,
        model.embed_texts(["a crater"], PromptOptions(instruction="Retrieve images of the landform.")),
        atol=1e-6,
    )
    assert not np.allclose(
        embed(model, images(1)), embed(model, images(1), PromptOptions(instruction="Find it."))
    )
    model.check_options(PromptOptions(instruction="Find it."))


@pytest.fixture(scope="module")
def service(folder: Path) -> Iterator[TestClient]:
    with serving.serve({"tiny-qwen3": spec_for(folder)}) as client:
        yield client


def test_the_service_returns_the_in_process_vectors(service: TestClient, model: Qwen3VlEmbedder) -> None:
    served = served_images(service, "tiny-qwen3", png_files(2, step=30), instruction="Find it.")
    np.testing.assert_allclose(
        served, embed(model, images(2), PromptOptions(instruction="Find it.")), atol=1e-6
    )
    for options in ({}, {"instruction": "Retrieve images of the landform"}):
        texts = served_texts(service, "tiny-qwen3", ["a crater"], **options)
        expected = model.embed_texts(["a crater"], PromptOptions(**options))[0]
        np.testing.assert_allclose(texts[0], expected, atol=1e-6)


def test_served_rgba_images_are_flattened_on_white_as_qwen_vl_utils_does(
    service: TestClient, model: Qwen3VlEmbedder
) -> None:
    # The reference hands Qwen3-VL-Embedding file paths; qwen-vl-utils lays RGBA over white. The
    # service must not drop the alpha while decoding (it does for every other model).
    blob, on_white = rgba_png()
    served = served_images(service, "tiny-qwen3", [blob])
    assert np.abs(served - embed(model, [on_white])).max() < 1e-6
    dropped = embed(model, [Image.open(io.BytesIO(blob)).convert("RGB")])
    assert np.abs(served - dropped).max() > 1e-3

"""Every adapter family, offline: a tiny random model of the real architecture, saved as its hub
repository lays it out, loaded back through the same path the hub model takes (a local folder, and
a pinned snapshot in a Hugging Face cache), checked in-process and through the HTTP service."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from marsbench.encoder.adapters import EmbeddingModel, load_model
from marsbench.encoder.adapters.transformers_towers import TransformersTowers
from marsbench.encoder.core.engine import EncoderEngine
from marsbench.encoder.errors import ModelLoadFailed, ModelUnusable, UnsupportedModality
from marsbench.encoder.registry import ModelSpec
from marsbench.encoder.settings import EncoderSettings
from marsbench.schemas.common import Modality
from tests.conftest import write_random_open_clip
from tests.encoder import serving, tiny_models
from tests.encoder.serving import CPU, REVISION, embed, png_files, served_images, served_texts

IMAGE_ONLY = frozenset({Modality.IMAGE})
BOTH = frozenset({Modality.IMAGE, Modality.TEXT})

# family -> (writer, modalities, options)
FAMILIES: dict[str, tuple[Callable[[Path], Path], frozenset[Modality], dict[str, str]]] = {
    "open_clip": (write_random_open_clip, BOTH, {}),
    "hf_clip": (tiny_models.write_tiny_clip_hf, BOTH, {}),
    "hf_aimv2": (tiny_models.write_tiny_aimv2, BOTH, {}),
    "hf_aimv2_vision": (tiny_models.write_tiny_aimv2_vision, IMAGE_ONLY, {"pooling": "mean"}),
    "hf_dinov3": (tiny_models.write_tiny_dinov3, IMAGE_ONLY, {"pooling": "cls"}),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {family: writer(root / family) for family, (writer, _, _) in FAMILIES.items()}


def spec_for(family: str, source: str, **extra: object) -> ModelSpec:
    _, modalities, options = FAMILIES[family]
    fields: dict[str, object] = {"modalities": modalities, "options": options} | extra
    return serving.spec(f"tiny-{family}", family, source, **fields)


@pytest.fixture(scope="module")
def models(folders: dict[str, Path]) -> dict[str, EmbeddingModel]:
    return {f: load_model(spec_for(f, f"local-dir:{folder}"), CPU) for f, folder in folders.items()}


@pytest.fixture(scope="module")
def service(folders: dict[str, Path]) -> Iterator[TestClient]:
    specs = {f"tiny-{f}": spec_for(f, f"local-dir:{folder}") for f, folder in folders.items()}
    with serving.serve(specs, max_loaded_models=8) as client:
        yield client


def images(n: int) -> list[Image.Image]:
    return serving.images(n, step=7)


@pytest.mark.parametrize("family", FAMILIES)
def test_images_give_normalised_deterministic_rows(models: dict[str, EmbeddingModel], family: str) -> None:
    model = models[family]
    first = embed(model, images(3))
    assert first.shape == (3, model.dimension) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first, embed(model, images(3)))
    assert not np.allclose(first[0], first[1]), "different images must not collapse to one vector"


@pytest.mark.parametrize("family", FAMILIES)
def test_batching_does_not_change_a_vector(models: dict[str, EmbeddingModel], family: str) -> None:
    model = models[family]
    batch = embed(model, images(4))
    alone = np.concatenate([embed(model, [picture]) for picture in images(4)])
    np.testing.assert_allclose(batch, alone, atol=1e-5)


@pytest.mark.parametrize("family", [f for f, (_, mods, _) in FAMILIES.items() if Modality.TEXT in mods])
def test_texts_share_the_image_space(models: dict[str, EmbeddingModel], family: str) -> None:
    model = models[family]
    texts = ["a crater", "a field of yardangs on Mars seen from orbit", "an alluvial fan"]
    vectors = model.embed_texts(texts)
    assert vectors.shape == (3, model.dimension) == (3, embed(model, images(1)).shape[1])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Padding to the longest text of a batch must not move the short ones.
    np.testing.assert_allclose(vectors[0], model.embed_texts(texts[:1])[0], atol=1e-5)
    assert model.count_tokens(texts[:1]) >= 3


def _reference_image_vectors(family: str, folder: Path, pixels: torch.Tensor) -> torch.Tensor:
    """The pooling each model's reference wrapper applies, written out with transformers directly."""
    import transformers

    with torch.inference_mode():
        if family == "hf_clip":
            out = transformers.CLIPModel.from_pretrained(folder).get_image_features(pixel_values=pixels)
            return out.pooler_output
        if family == "hf_aimv2":
            model = transformers.Aimv2Model.from_pretrained(folder)
            pooled = model.vision_model(pixel_values=pixels).pooler_output  # attention-pooling head
            return model.visual_projection(pooled)
        if family == "hf_aimv2_vision":
            hidden = transformers.Aimv2VisionModel.from_pretrained(folder)(pixel_values=pixels)
            return hidden.last_hidden_state.mean(dim=1)
        hidden = transformers.DINOv3ViTModel.from_pretrained(folder)(pixel_values=pixels)
        return hidden.last_hidden_state[:, 0]  # CLS, ahead of the register and patch tokens


@pytest.mark.parametrize("family", ["hf_clip", "hf_aimv2", "hf_aimv2_vision", "hf_dinov3"])
def test_pooling_matches_the_reference_rule(
    models: dict[str, EmbeddingModel], folders: dict[str, Path], family: str
) -> None:
    from transformers import AutoImageProcessor

    pictures = images(2)
    processor = AutoImageProcessor.from_pretrained(folders[family])
    pixels = processor(images=pictures, return_tensors="pt")["pixel_values"]
    expected = torch.nn.functional.normalize(
        _reference_image_vectors(family, folders[family], pixels), dim=-1
    )
    np.testing.assert_allclose(embed(models[family], pictures), expected.numpy(), atol=1e-5)


def test_aimv2_text_is_causal_and_pooled_at_eos(models: dict[str, EmbeddingModel]) -> None:
    """Apple's AIMv2 text tower is causal and pools its EOS token, so nothing after the EOS can move
    a text's vector. (transformers 5's sdpa path for Aimv2TextModel is not causal; the adapter runs
    the text tower with eager attention and a mask, and this test fails if that is undone.)"""
    model = models["hf_aimv2"]
    assert isinstance(model, TransformersTowers)
    encoded = model._encode(["a crater"])
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    junk = torch.tensor([[320, 1125, 539]])
    tail = torch.cat([ids, junk], dim=1), torch.cat([mask, torch.ones_like(junk)], dim=1)
    with torch.inference_mode():
        alone = model._family.text_features(model.module, {"input_ids": ids, "attention_mask": mask})
        followed = model._family.text_features(
            model._model, {"input_ids": tail[0], "attention_mask": tail[1]}
        )
    np.testing.assert_allclose(alone.numpy(), followed.numpy(), atol=1e-5)
    np.testing.assert_allclose(
        model.embed_texts(["a crater"]), torch.nn.functional.normalize(alone, dim=-1).numpy(), atol=1e-6
    )


def test_dinov3_mean_pooling_option_differs_from_cls(folders: dict[str, Path]) -> None:
    cls_model = load_model(spec_for("hf_dinov3", f"local-dir:{folders['hf_dinov3']}"), CPU)
    mean_spec = spec_for("hf_dinov3", f"local-dir:{folders['hf_dinov3']}", options={"pooling": "mean"})
    mean_model = load_model(mean_spec, CPU)
    assert not np.allclose(embed(cls_model, images(1)), embed(mean_model, images(1)))


@pytest.mark.parametrize("family", FAMILIES)
def test_hub_models_load_from_a_pinned_snapshot(
    folders: dict[str, Path], models: dict[str, EmbeddingModel], family: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    cached = serving.pinned_snapshot(tmp_path, f"tiny/{family}", folders[family], monkeypatch)
    hub_model = load_model(spec_for(family, f"hf-hub:tiny/{family}", revision=REVISION), cached)
    np.testing.assert_array_equal(embed(hub_model, images(2)), embed(models[family], images(2)))
    missing = spec_for(family, f"hf-hub:tiny/{family}", revision="f" * 40)
    with pytest.raises(ModelLoadFailed, match="not in the local cache"):
        load_model(missing, cached)


def test_a_tokenizer_without_vocabulary_files_is_refused(folders: dict[str, Path], tmp_path: Path) -> None:
    broken = shutil.copytree(folders["hf_clip"], tmp_path / "no-vocab")
    for name in ("vocab.json", "merges.txt", "tokenizer.json"):
        (broken / name).unlink()
    with pytest.raises(ModelLoadFailed, match=r"tokens|tokenizer"):
        load_model(spec_for("hf_clip", f"local-dir:{broken}"), CPU)


def test_weights_that_do_not_fit_the_class_are_refused(folders: dict[str, Path]) -> None:
    """A DINOv3 folder read as AIMv2 leaves every layer random: refuse, never serve noise."""
    with pytest.raises(ModelLoadFailed):
        load_model(spec_for("hf_aimv2_vision", f"local-dir:{folders['hf_dinov3']}"), CPU)


def test_a_folder_without_weights_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelUnusable, match="no weights"):
        load_model(spec_for("hf_dinov3", f"local-dir:{tmp_path}"), CPU)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_service_returns_the_in_process_vectors(
    service: TestClient, models: dict[str, EmbeddingModel], family: str
) -> None:
    served = served_images(service, f"tiny-{family}", png_files(3, step=7))
    np.testing.assert_allclose(served, embed(models[family], images(3)), atol=1e-6)
    if Modality.TEXT in models[family].modalities:
        texts = served_texts(service, f"tiny-{family}", ["a crater"])
        np.testing.assert_allclose(texts[0], models[family].embed_texts(["a crater"])[0], atol=1e-6)


@pytest.mark.parametrize("family", ["hf_aimv2_vision", "hf_dinov3"])
def test_image_only_models_refuse_text_with_422(service: TestClient, family: str) -> None:
    response = service.post("/v1/embeddings", json={"model": f"tiny-{family}", "input": ["a crater"]})
    assert response.status_code == 422
    assert "does not embed text" in response.json()["error"]["message"]


@pytest.mark.anyio
async def test_image_only_refusal_needs_no_model_load(folders: dict[str, Path]) -> None:
    specs = {"dino": spec_for("hf_dinov3", f"local-dir:{folders['hf_dinov3']}")}
    async with EncoderEngine(EncoderSettings(device="cpu"), specs=specs) as engine:
        with pytest.raises(UnsupportedModality):
            await engine.embed_texts("dino", ["a crater"])
        assert not [m for m in engine.list_models() if m.loaded]

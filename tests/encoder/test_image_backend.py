"""The image-processing backend a registry entry names is the one that runs, cards and records say
which, and the reference's dtype is there on request (issue 15)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from marsbench.encoder.adapters import RuntimeOptions, load_model
from marsbench.encoder.adapters.image_processing import backend_of
from marsbench.encoder.adapters.transformers_towers import TransformersTowers
from marsbench.encoder.core.engine import EncoderEngine
from marsbench.encoder.registry import ModelSpec, builtin_specs
from marsbench.encoder.settings import EncoderSettings
from marsbench.schemas.common import Modality
from tests.encoder import serving, tiny_models
from tests.encoder.mllm import tiny_qwen2_vl
from tests.encoder.serving import CPU

BOTH = frozenset({Modality.IMAGE, Modality.TEXT})


def textured(width: int, height: int, seed: int = 0) -> Image.Image:
    """Fine noise: every resampling kernel leaves its own trace in it."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_models.write_tiny_clip_hf(tmp_path_factory.mktemp("clip") / "model")


def clip_spec(folder: Path, backend: str | None) -> ModelSpec:
    fields = {"image_backend": backend} if backend else {}
    return serving.spec("tiny-clip", "hf_clip", f"local-dir:{folder}", **fields)


def by_hand(image: Image.Image, size: int) -> np.ndarray:
    """The slow CLIP processor's steps, written out: PIL bicubic resize of the short side to
    `size`, centre crop, scale to [0, 1], normalise; channels first."""
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    target = (size, new_long) if width <= height else (new_long, size)
    resized = np.asarray(image.resize(target, Image.Resampling.BICUBIC), dtype=np.float64)
    top, left = (resized.shape[0] - size) // 2, (resized.shape[1] - size) // 2
    crop = resized[top : top + size, left : left + size] / 255.0
    mean, std = np.array(tiny_models.MEAN), np.array(tiny_models.STD)
    return ((crop - mean) / std).transpose(2, 0, 1)


def test_the_pil_backend_computes_the_slow_processors_pixels(clip_folder: Path) -> None:
    model = load_model(clip_spec(clip_folder, "pil"), CPU)
    assert isinstance(model, TransformersTowers)
    size = tiny_models.IMAGE_SIZE
    for picture in (textured(53, 37), textured(30, 71, seed=1)):
        pixels = model.preprocess_image(picture).numpy()
        assert np.abs(pixels - by_hand(picture, size)).max() < 1e-5


def test_the_two_backends_give_other_pixels_and_the_registry_picks_one(clip_folder: Path) -> None:
    pil = load_model(clip_spec(clip_folder, "pil"), CPU)
    fast = load_model(clip_spec(clip_folder, "torchvision"), CPU)
    default = load_model(clip_spec(clip_folder, None), CPU)
    picture = textured(53, 37)
    a, b = pil.preprocess_image(picture), fast.preprocess_image(picture)
    assert a.shape == b.shape
    assert (a - b).abs().max() > 1e-3  # the grey levels the backends round differently
    assert torch.equal(default.preprocess_image(picture), b)  # transformers 5's own default
    assert "CLIPImageProcessorPil (pil backend)" in pil.preprocessing
    assert "(torchvision backend)" in fast.preprocessing
    assert "resize" in pil.preprocessing and "center crop" in pil.preprocessing


def test_cards_name_the_backend_before_loading_and_the_preprocessing_after(clip_folder: Path) -> None:
    spec = clip_spec(clip_folder, "pil")

    async def cards() -> tuple[object, object]:
        async with EncoderEngine(EncoderSettings(device="cpu"), specs={spec.name: spec}) as engine:
            before = await engine.describe(spec.name, load=False)
            png = io.BytesIO()
            textured(40, 40).save(png, format="PNG")
            await engine.embed_images(spec.name, [png.getvalue()])
            return before, await engine.describe(spec.name, load=False)

    before, after = asyncio.run(cards())
    assert before.image_backend == "pil" and before.preprocessing is None  # type: ignore[attr-defined]
    assert after.preprocessing.startswith("transformers CLIPImageProcessorPil")  # type: ignore[attr-defined]
    assert after.precision == "fp32"  # type: ignore[attr-defined]


def test_an_mllm_processor_keeps_its_settings_on_the_pil_backend(tmp_path: Path) -> None:
    folder = tiny_qwen2_vl.write_full(tmp_path / "gme")
    options = {"min_pixels": tiny_qwen2_vl.MIN_PIXELS, "max_pixels": tiny_qwen2_vl.MAX_PIXELS}
    pil = load_model(
        serving.spec(
            "g", "gme", f"local-dir:{folder}", modalities=BOTH, options=options, image_backend="pil"
        ),
        CPU,
    )
    fast = load_model(serving.spec("g", "gme", f"local-dir:{folder}", modalities=BOTH, options=options), CPU)
    processors = [m.processor.image_processor for m in (pil, fast)]  # type: ignore[attr-defined]
    assert [backend_of(p) for p in processors] == ["pil", "torchvision"]
    assert processors[0].size == processors[1].size  # the registry's pixel bounds survive the swap
    assert "Qwen2VLImageProcessorPil (pil backend)" in pil.preprocessing
    assert pil.preprocessing.startswith("PIL resize to multiples of 28")


def test_the_reference_cpu_dtype_is_a_named_option(tmp_path: Path) -> None:
    folder = tiny_qwen2_vl.write_full(tmp_path / "ops")
    spec = serving.spec(
        "o", "ops_mm", f"local-dir:{folder}", modalities=BOTH, cpu_precision="bf16",
        options={"min_pixels": tiny_qwen2_vl.MIN_PIXELS, "max_pixels": tiny_qwen2_vl.MAX_PIXELS},
    )  # fmt: skip
    default = load_model(spec, CPU)
    reference = load_model(spec, RuntimeOptions(device="cpu", cpu_precision="reference"))
    assert next(default.module.parameters()).dtype == torch.float32  # type: ignore[attr-defined]
    assert next(reference.module.parameters()).dtype == torch.bfloat16  # type: ignore[attr-defined]
    a, b = default.embed_texts(["a crater"]), reference.embed_texts(["a crater"])
    assert a.dtype == b.dtype == np.float32 and not np.array_equal(a, b)

    async def precision(setting: str) -> str | None:
        settings = EncoderSettings(device="cpu", cpu_precision=setting)  # type: ignore[arg-type]
        async with EncoderEngine(settings, specs={spec.name: spec}) as engine:
            return (await engine.describe(spec.name)).precision

    assert asyncio.run(precision("fp32")) == "fp32"
    assert asyncio.run(precision("reference")) == "bf16"


def test_open_clip_entries_refuse_a_backend() -> None:
    with pytest.raises(ValueError, match="open_clip models preprocess with their own transforms"):
        serving.spec("c", "open_clip", "ViT-B-32", image_backend="pil")


def test_the_builtin_entries_carry_the_reference_backends() -> None:
    # docs/models.md gives the evidence for each: which class the reference's transformers loads.
    backends = {
        name: spec.image_backend for name, spec in builtin_specs().items() if spec.family != "open_clip"
    }
    assert backends == {
        "bge-vl-large": "pil",
        "aimv2-large-patch14-224-lit": "pil",
        "aimv2-large-patch14-448": "pil",
        "dinov3-vitl16": "torchvision",
        "e5-v": "pil",
        "gme-qwen2-vl-2b": "pil",
        "vlm2vec-v2": "pil",
        "b3-qwen2-2b": "pil",
        "jina-embeddings-v4": "torchvision",
        "ops-mm-embedding-v1-2b": "torchvision",
        "qwen3-vl-embedding-2b": "torchvision",
    }
    reference_cpu = {n: s.cpu_precision for n, s in builtin_specs().items() if s.cpu_precision}
    assert reference_cpu == {"ops-mm-embedding-v1-2b": "bf16", "jina-embeddings-v4": "bf16"}


def test_other_models_drop_the_alpha_channel_as_the_reference_loaders_do(clip_folder: Path) -> None:
    spec = clip_spec(clip_folder, "pil")
    blob, on_white = serving.rgba_png()
    model = load_model(spec, CPU)
    with serving.serve({spec.name: spec}) as client:
        served = serving.served_images(client, spec.name, [blob])
    dropped = serving.embed(model, [Image.open(io.BytesIO(blob)).convert("RGB")])
    assert np.abs(served - dropped).max() < 1e-6
    assert np.abs(served - serving.embed(model, [on_white])).max() > 1e-3

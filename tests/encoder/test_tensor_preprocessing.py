"""The tensor preprocessing path (PIL decode, torch resize): same vectors within 1e-4 cosine, same
refusals as the PIL path."""

from __future__ import annotations

import numpy as np
import pytest

from marsbench.datasets.synth import relief_png_tiles
from marsbench.encoder.adapters import RuntimeOptions, load_model
from marsbench.encoder.core.engine import EncoderEngine
from marsbench.encoder.core.images import decode_image, decode_tensor
from marsbench.encoder.errors import InvalidInput
from marsbench.encoder.registry import ModelSpec, resolve_model
from marsbench.encoder.settings import EncoderSettings

pytestmark = pytest.mark.anyio
LIMIT = 64_000_000


RANDOM_VIT_B_32 = ModelSpec(name="vit-b-32", family="open_clip", source="ViT-B-32", random_weights=True)


@pytest.mark.parametrize(
    ("spec", "resize_mode"),
    [
        (resolve_model("marsbench-tiny"), "shortest"),
        (RANDOM_VIT_B_32, "shortest"),  # random weights (asked for: random_weights), 224 px
        (RANDOM_VIT_B_32, "squash"),  # SigLIP's mode
    ],
    ids=["marsbench-tiny", "vit-b-32-shortest", "vit-b-32-squash"],
)
def test_tensor_path_keeps_vectors_within_1e4_cosine(spec: ModelSpec, resize_mode: str) -> None:
    from open_clip.transform import PreprocessCfg, image_transform_v2

    from marsbench.encoder.adapters.open_clip import tensor_transform

    model = load_model(spec, RuntimeOptions(device="cpu"))
    cfg = dict(model.module.visual.preprocess_cfg) | {"resize_mode": resize_mode}
    exact_transform = image_transform_v2(PreprocessCfg(**cfg), is_train=False)
    fast_transform = tensor_transform(cfg)
    assert fast_transform is not None
    blobs = relief_png_tiles(4) + relief_png_tiles(1, size=300)
    exact = model.embed_prepared(
        [exact_transform(decode_image(b, i, max_pixels=LIMIT)) for i, b in enumerate(blobs)]
    )
    fast = model.embed_prepared(
        [fast_transform(decode_tensor(b, i, max_pixels=LIMIT)) for i, b in enumerate(blobs)]
    )
    assert float((1 - (exact * fast).sum(axis=1)).max()) < 1e-4


def test_decoders_agree_on_pixels_and_refusals() -> None:
    blob = relief_png_tiles(1, size=64)[0]
    pil = np.asarray(decode_image(blob, 0, max_pixels=LIMIT)).transpose(2, 0, 1)
    np.testing.assert_array_equal(decode_tensor(blob, 0, max_pixels=LIMIT).numpy(), pil)
    for bad, message in [
        (b"", "empty image"),
        (blob[:80], "cannot decode"),
        (b"not an image", "cannot decode"),
    ]:
        with pytest.raises(InvalidInput, match=message) as caught:
            decode_tensor(bad, 3, max_pixels=LIMIT)
        assert caught.value.index == 3
    with pytest.raises(InvalidInput, match="over the limit"):
        decode_tensor(blob, 0, max_pixels=100)


async def test_the_engine_serves_the_tensor_path_when_asked() -> None:
    blobs = relief_png_tiles(3, size=128)
    vectors = {}
    for path in ("pil", "tensor"):
        async with EncoderEngine(EncoderSettings(device="cpu", image_preprocessing=path)) as engine:
            vectors[path] = await engine.embed_images("marsbench-tiny", blobs)
    assert float((1 - (vectors["pil"] * vectors["tensor"]).sum(axis=1)).max()) < 1e-4
    assert not np.array_equal(vectors["pil"], vectors["tensor"])  # the other path really ran

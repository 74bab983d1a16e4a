from pathlib import Path

import pytest

from marsbench.encoder.errors import InvalidModelRef, UnknownModel
from marsbench.encoder.registry import RegistryError, registered_specs, resolve_model
from marsbench.schemas.common import Modality


def test_registered_name_resolves_to_its_spec() -> None:
    spec = resolve_model("marsbench-tiny")
    assert spec.family == "open_clip"
    assert spec.source.startswith("local-dir:")
    assert Path(spec.source.removeprefix("local-dir:")).name == "marsbench-tiny"


@pytest.mark.parametrize(
    ("ref", "source", "pretrained"),
    [
        ("open_clip:ViT-B-32", "ViT-B-32", None),
        ("open_clip:ViT-L-14-quickgelu:dfn2b", "ViT-L-14-quickgelu", "dfn2b"),
        ("open_clip:hf-hub:timm/ViT-L-16-SigLIP-384", "hf-hub:timm/ViT-L-16-SigLIP-384", None),
        ("open_clip:local-dir:/models/x", "local-dir:/models/x", None),
    ],
)
def test_ad_hoc_open_clip_references(ref: str, source: str, pretrained: str | None) -> None:
    spec = resolve_model(ref)
    assert (spec.name, spec.source, spec.pretrained, spec.checkpoint) == (ref, source, pretrained, None)


def test_checkpoint_suffix_is_resolved_to_an_absolute_path(tmp_path: Path) -> None:
    ckpt = tmp_path / "marscope.pt"
    spec = resolve_model(f"open_clip:ViT-L-14-quickgelu:dfn2b@{ckpt}")
    assert spec.checkpoint == ckpt
    assert spec.name == f"open_clip:ViT-L-14-quickgelu:dfn2b@{ckpt}"
    assert spec.pretrained == "dfn2b"


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(UnknownModel) as caught:
        resolve_model("clip-of-mars")
    assert caught.value.known == sorted(registered_specs())
    assert "marsbench-tiny" in str(caught.value)


@pytest.mark.parametrize("ref", ["open_clip:", "open_clip::dfn2b", "marsbench-tiny@"])
def test_malformed_references_are_refused(ref: str) -> None:
    with pytest.raises(InvalidModelRef):
        resolve_model(ref)


BENCHMARK_MODELS = {
    "dfn2b-clip-vit-l-14",
    "siglip-vit-l-16-384",
    "siglip2-vit-l-16-512",
    "pe-core-l-14-336",
    "marscope",
    "bge-vl-large",
    "aimv2-large-patch14-224-lit",
    "aimv2-large-patch14-448",
    "dinov3-vitl16",
}


def test_the_benchmark_encoders_are_registered() -> None:
    specs = registered_specs()
    assert BENCHMARK_MODELS | {"marsbench-tiny"} <= set(specs)
    image_only = {name for name in BENCHMARK_MODELS if specs[name].modalities == {Modality.IMAGE}}
    assert image_only == {"aimv2-large-patch14-448", "dinov3-vitl16"}
    for name in BENCHMARK_MODELS - {"siglip2-vit-l-16-512", "bge-vl-large", "dinov3-vitl16"}:
        revision = specs[name].revision
        assert revision is not None and len(revision) == 40, f"{name} must pin a full commit hash"
    assert specs["aimv2-large-patch14-224-lit"].revision == "c2cd59a786c4c06f39d199c50d08cc2eab9f8605"
    assert specs["aimv2-large-patch14-448"].revision == "cefb13f21003bdadba65bfbee956c82b976cd23d"
    marscope = specs["marscope"]
    assert (marscope.source, marscope.pretrained, marscope.image_size, marscope.force_quick_gelu) == (
        "ViT-L-14-quickgelu",
        "dfn2b",
        512,
        True,
    )
    assert marscope.status() == "needs checkpoint"


def test_marscope_without_its_checkpoint_is_refused_with_the_fix() -> None:
    from marsbench.encoder.adapters import RuntimeOptions, load_model

    with pytest.raises(InvalidModelRef, match=r"marscope@/path/to/checkpoint.pt"):
        load_model(resolve_model("marscope"), RuntimeOptions(device="cpu"))
    named = resolve_model("marscope@/data/marscope.pt")
    assert named.checkpoint == Path("/data/marscope.pt") and named.status() == "available"


def test_a_registry_file_adds_and_completes_models(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    registry = tmp_path / "lab.toml"
    registry.write_text(
        """
[models.lab-dino]
family = "hf_dinov3"
source = "local-dir:weights"
modalities = ["image"]
default_batch_size = 8
options = { pooling = "mean" }

[models.marscope]
checkpoint = "ckpt/marscope_epoch30.pt"
"""
    )
    specs = registered_specs([registry])
    lab = specs["lab-dino"]
    assert lab.local_folder() == (tmp_path / "weights").resolve()
    assert (lab.modalities, lab.default_batch_size, lab.options) == ({Modality.IMAGE}, 8, {"pooling": "mean"})
    marscope = specs["marscope"]
    assert marscope.checkpoint == (tmp_path / "ckpt/marscope_epoch30.pt").resolve()
    assert marscope.image_size == 512 and marscope.status() == "available"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[models.x]\nfamily = 'open_clip'\n", r"\[models.x\]: source: Field required"),
        ("[models.x]\nfamily = 'open_clip'\nsource = 'a'\nbatch = 3\n", r"batch: Extra inputs"),
        ("[models.x]\nfamily = 'open_clip'\nsource = 'a'\nmodalities = ['audio']\n", r"modalities"),
        ("[model.x]\nfamily = 'open_clip'\n", r"unknown top-level key"),
        ("[models.x\n", r"not valid TOML"),
    ],
)
def test_bad_registry_files_name_the_file_entry_and_field(tmp_path: Path, text: str, message: str) -> None:
    registry = tmp_path / "bad.toml"
    registry.write_text(text)
    with pytest.raises(RegistryError, match=message) as caught:
        registered_specs([registry])
    assert str(registry) in str(caught.value)


def test_a_missing_registry_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="does not exist"):
        registered_specs([tmp_path / "nope.toml"])


def test_unknown_family_is_refused_at_load_with_the_known_ones() -> None:
    from marsbench.encoder.adapters import RuntimeOptions, load_model
    from marsbench.encoder.registry import ModelSpec

    spec = ModelSpec(name="x", family="keras", source="local-dir:/tmp")
    with pytest.raises(InvalidModelRef, match="hf_dinov3"):
        load_model(spec, RuntimeOptions(device="cpu"))


MLLM_MODELS = {
    "e5-v",
    "gme-qwen2-vl-2b",
    "vlm2vec-v2",
    "b3-qwen2-2b",
    "jina-embeddings-v4",
    "ops-mm-embedding-v1-2b",
    "qwen3-vl-embedding-2b",
}


def test_the_benchmark_mllm_embedders_are_registered_with_both_modalities() -> None:
    specs = registered_specs()
    assert set(specs) >= MLLM_MODELS
    for name in MLLM_MODELS:
        spec = specs[name]
        assert spec.modalities == {Modality.IMAGE, Modality.TEXT} and spec.dimension, name
        assert spec.memory_gb and spec.precision in ("bf16", "fp16"), name
    gme = specs["gme-qwen2-vl-2b"].options
    assert gme["text_instruction"] == "Find an image that matches the given text."

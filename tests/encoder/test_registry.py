from pathlib import Path

import pytest

from marsbench.encoder.core.errors import InvalidModelRef, UnknownModel
from marsbench.encoder.core.registry import registered_specs, resolve_model


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

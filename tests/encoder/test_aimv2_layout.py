"""Apple-layout AIMv2 checkpoints are rewritten into transformers' layout and compute the same features.

Tiny native models are perturbed (so that no two tensors of a kind are equal and a swapped name would
show), written out the way Apple's remote-code hub revisions lay them out, converted back and compared.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from marsbench.encoder.adapters.aimv2_layout import ensure_native_layout, is_original_layout
from marsbench.encoder.errors import ModelLoadFailed
from tests.encoder import tiny_models

# Native (transformers) key -> Apple key, relative to one tower; q/k/v are merged separately.
_TOWER_TO_APPLE = [
    (r"embeddings\.patch_embed\.(weight|bias)", r"preprocessor.patchifier.proj.\1"),
    (r"embeddings\.rms_norm\.weight", "preprocessor.patchifier.norm.weight"),
    (r"embeddings\.token_embedding\.weight", "preprocessor.text_embedding.weight"),
    (r"encoder\.layers\.(\d+)\.attention\.out_proj\.(weight|bias)", r"trunk.blocks.\1.attn.proj.\2"),
    (r"encoder\.layers\.(\d+)\.ffn\.gate_proj\.(weight|bias)", r"trunk.blocks.\1.mlp.fc1.\2"),
    (r"encoder\.layers\.(\d+)\.ffn\.up_proj\.(weight|bias)", r"trunk.blocks.\1.mlp.fc3.\2"),
    (r"encoder\.layers\.(\d+)\.ffn\.down_proj\.(weight|bias)", r"trunk.blocks.\1.mlp.fc2.\2"),
    (r"encoder\.layers\.(\d+)\.rms_norm1\.weight", r"trunk.blocks.\1.norm_1.weight"),
    (r"encoder\.layers\.(\d+)\.rms_norm2\.weight", r"trunk.blocks.\1.norm_2.weight"),
    (r"rms_norm\.weight", "trunk.post_trunk_norm.weight"),
    (r"head\.cls_token", "head.cls_token"),
    (r"head\.k_proj\.(weight|bias)", r"head.k.\1"),
    (r"head\.v_proj\.(weight|bias)", r"head.v.\1"),
    (r"head\.output_proj\.(weight|bias)", r"head.linear.\1"),
]
_QKV = re.compile(r"(.*)encoder\.layers\.(\d+)\.attention\.([qkv])_proj\.(weight|bias)")
TOKENS = torch.tensor([[49406, 320, 1125, 539, 49407, 0, 0], [49406, 2368, 49407, 0, 0, 0, 0]])


def _tower_to_apple(key: str, tensor: torch.Tensor, *, text: bool) -> tuple[str, torch.Tensor]:
    if key == "embeddings.position_embedding.weight":  # Apple: text (ctx, dim), vision (1, patches, dim)
        return (
            ("preprocessor.positional_embedding", tensor)
            if text
            else ("preprocessor.pos_embed", tensor[None])
        )
    for pattern, template in _TOWER_TO_APPLE:
        if match := re.fullmatch(pattern, key):
            return match.expand(template), tensor
    raise AssertionError(f"test writer does not know {key}")


def apple_state_dict(native: dict[str, torch.Tensor], *, two_tower: bool) -> dict[str, torch.Tensor]:
    """The state dict of Apple's ml-aim module holding the same weights as a native Aimv2 model."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str, str], dict[str, torch.Tensor]] = {}
    for key, tensor in native.items():
        if match := _QKV.fullmatch(key):
            prefix, block, part, kind = match.groups()
            qkv.setdefault((prefix, block, kind), {})[part] = tensor
            continue
        if not two_tower:
            new_key, value = _tower_to_apple(key, tensor, text=False)
        elif key.startswith("vision_model."):
            new_key, value = _tower_to_apple(key.removeprefix("vision_model."), tensor, text=False)
            new_key = "image_encoder." + new_key
        elif key.startswith("text_model."):
            new_key, value = _tower_to_apple(key.removeprefix("text_model."), tensor, text=True)
            new_key = "text_encoder." + new_key
        else:
            top = {
                "visual_projection.weight": "image_projector.weight",
                "text_projection.weight": "text_projector.weight",
                "logit_scale": "log_logit_scale",
            }
            new_key, value = top[key], tensor
        out[new_key] = value.contiguous().clone()
    for (prefix, block, kind), parts in qkv.items():
        tower = {"": "", "vision_model.": "image_encoder.", "text_model.": "text_encoder."}[prefix]
        fused = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
        out[f"{tower}trunk.blocks.{block}.attn.qkv.{kind}"] = fused
    return out


def _vision_fields(vision: dict) -> dict:
    return {
        "hidden_size": vision["hidden_size"],
        "intermediate_size": vision["intermediate_size"],
        "num_attention_heads": vision["num_attention_heads"],
        "num_hidden_layers": vision["num_hidden_layers"],
        "num_channels": 3,
        "patch_size": vision["patch_size"],
        "image_size": vision["image_size"],
        "qkv_bias": False,
        "use_bias": False,
        "rms_norm_eps": 1e-5,
    }


def write_apple_layout(native_dir: Path, out: Path, *, two_tower: bool) -> Path:
    """`native_dir`'s model as Apple's remote-code hub revision holds it."""
    out.mkdir(parents=True)
    with safe_open(str(native_dir / "model.safetensors"), framework="pt") as handle:
        native = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    save_file(apple_state_dict(native, two_tower=two_tower), str(out / "model.safetensors"))
    config = json.loads((native_dir / "config.json").read_text())
    auto_map = {"AutoConfig": "configuration_aimv2.AIMv2Config", "AutoModel": "modeling_aimv2.AIMv2Model"}
    if two_tower:
        text = config["text_config"]
        remote = {
            "architectures": ["AIMv2Model"],
            "auto_map": auto_map,
            "init_temperature": 0.07,
            "max_logit_scale": 100.0,
            "model_type": "aimv2",
            "projection_dim": config["projection_dim"],
            **_vision_fields(config["vision_config"]),
            "text_config": {
                "eos_token_id": text["eos_token_id"],
                "hidden_size": text["hidden_size"],
                "intermediate_size": text["intermediate_size"],
                "is_causal": True,
                "max_context_length": text["max_position_embeddings"],
                "model_type": "aimv2",
                "num_attention_heads": text["num_attention_heads"],
                "num_hidden_layers": text["num_hidden_layers"],
                "vocab_size": text["vocab_size"],
                "qkv_bias": False,
                "use_bias": False,
                "rms_norm_eps": 1e-5,
            },
        }
    else:
        remote = {"architectures": ["AIMv2Model"], "auto_map": auto_map, "model_type": "aimv2"}
        remote |= _vision_fields(config)
    (out / "config.json").write_text(json.dumps(remote, indent=2))
    (out / "modeling_aimv2.py").write_text("# remote code, never imported\n")
    for path in native_dir.iterdir():
        if path.name not in {"config.json", "model.safetensors"}:
            shutil.copyfile(path, out / path.name)
    return out


def _perturbed(folder: Path, model_class: type) -> Path:
    """Give every tensor (norm scales, biases too) distinct random values, so a swapped name shows."""
    model = model_class.from_pretrained(folder).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lit_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from transformers import Aimv2Model

    root = tmp_path_factory.mktemp("aimv2-lit")
    native = _perturbed(tiny_models.write_tiny_aimv2(root / "native"), Aimv2Model)
    return native, write_apple_layout(native, root / "apple", two_tower=True)


@pytest.fixture(scope="module")
def vision_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from transformers import Aimv2VisionModel

    root = tmp_path_factory.mktemp("aimv2-vision")
    native = _perturbed(tiny_models.write_tiny_aimv2_vision(root / "native"), Aimv2VisionModel)
    return native, write_apple_layout(native, root / "apple", two_tower=False)


def _pixels(batch: int = 2) -> torch.Tensor:
    size = tiny_models.IMAGE_SIZE
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(2))


def _load_clean(model_class: type, folder: Path) -> torch.nn.Module:
    model, info = model_class.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"], info
    assert not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    return model.eval()


def test_detects_each_layout(lit_dirs: tuple[Path, Path], vision_dirs: tuple[Path, Path]) -> None:
    for native, apple in (lit_dirs, vision_dirs):
        assert not is_original_layout(native)
        assert is_original_layout(apple)


def test_auto_map_alone_marks_the_original_layout(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"auto_map": {}, "model_type": "aimv2"}))
    assert is_original_layout(tmp_path)


def test_native_folder_is_returned_unchanged(lit_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    native, _ = lit_dirs
    assert ensure_native_layout(native, vision_only=False, work_dir=tmp_path) == native
    assert not any(tmp_path.iterdir())


def test_two_tower_conversion_keeps_image_and_text_features(
    lit_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    from transformers import Aimv2Model, AutoImageProcessor, AutoTokenizer

    native_dir, apple_dir = lit_dirs
    out = ensure_native_layout(apple_dir, vision_only=False, work_dir=tmp_path)
    assert out.parent == tmp_path
    assert not is_original_layout(out)
    assert not (out / "modeling_aimv2.py").exists()
    config = json.loads((out / "config.json").read_text())
    assert "auto_map" not in config
    assert config["vision_config"]["use_head"] is True
    converted = _load_clean(Aimv2Model, out)
    native = Aimv2Model.from_pretrained(native_dir).eval()
    with torch.no_grad():
        pixels = _pixels()
        want = native.get_image_features(pixel_values=pixels).pooler_output
        got = converted.get_image_features(pixel_values=pixels).pooler_output
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
        want = native.get_text_features(input_ids=TOKENS).pooler_output
        got = converted.get_text_features(input_ids=TOKENS).pooler_output
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    torch.testing.assert_close(converted.logit_scale, native.logit_scale)
    AutoImageProcessor.from_pretrained(out)  # the processor and tokenizer files came along
    assert len(AutoTokenizer.from_pretrained(out)) == 49408


def test_vision_only_conversion_keeps_hidden_states(vision_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    from transformers import Aimv2VisionModel

    native_dir, apple_dir = vision_dirs
    out = ensure_native_layout(apple_dir, vision_only=True, work_dir=tmp_path)
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "aimv2_vision_model"
    assert config["use_head"] is False
    assert (config["num_hidden_layers"], config["image_size"], config["patch_size"]) == (2, 32, 8)
    converted = _load_clean(Aimv2VisionModel, out)
    native = Aimv2VisionModel.from_pretrained(native_dir).eval()
    with torch.no_grad():
        pixels = _pixels()
        want = native(pixel_values=pixels).last_hidden_state
        got = converted(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert (out / "preprocessor_config.json").is_file()


def test_second_call_reuses_the_converted_folder(vision_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    _, apple_dir = vision_dirs
    first = ensure_native_layout(apple_dir, vision_only=True, work_dir=tmp_path)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    second = ensure_native_layout(apple_dir, vision_only=True, work_dir=tmp_path)
    assert second == first
    assert (second / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary folder left behind


def test_changed_weights_give_a_new_folder(vision_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    _, apple_dir = vision_dirs
    source = tmp_path / "source"
    shutil.copytree(apple_dir, source)
    first = ensure_native_layout(source, vision_only=True, work_dir=tmp_path / "work")
    weights = source / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert ensure_native_layout(source, vision_only=True, work_dir=tmp_path / "work") != first


def _edited_copy(apple_dir: Path, dest: Path) -> Path:
    shutil.copytree(apple_dir, dest)
    return dest


def test_unknown_key_is_named(lit_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    source = _edited_copy(lit_dirs[1], tmp_path / "source")
    with safe_open(str(source / "model.safetensors"), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    tensors["image_encoder.trunk.blocks.0.attn.extra.weight"] = torch.zeros(2)
    save_file(tensors, str(source / "model.safetensors"))
    with pytest.raises(ModelLoadFailed, match=r"image_encoder\.trunk\.blocks\.0\.attn\.extra\.weight"):
        ensure_native_layout(source, vision_only=False, work_dir=tmp_path / "work")
    assert not any((tmp_path / "work").iterdir())  # the temporary folder is cleaned up


@pytest.mark.parametrize(
    ("section", "named"),
    [(None, "'num_attention_heads'"), ("text_config", "'text_config.num_attention_heads'")],
)
def test_missing_heads_field_is_named(
    lit_dirs: tuple[Path, Path], tmp_path: Path, section: str | None, named: str
) -> None:
    source = _edited_copy(lit_dirs[1], tmp_path / "source")
    config = json.loads((source / "config.json").read_text())
    del (config[section] if section else config)["num_attention_heads"]
    (source / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadFailed, match=re.escape(named)):
        ensure_native_layout(source, vision_only=False, work_dir=tmp_path / "work")


def test_wrong_kind_of_model_is_refused(lit_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelLoadFailed, match="two-tower"):
        ensure_native_layout(lit_dirs[1], vision_only=True, work_dir=tmp_path)


@pytest.mark.parametrize("family", ["hf_aimv2", "hf_aimv2_vision"])
def test_the_adapter_serves_a_pinned_apple_layout_snapshot_like_the_native_model(
    lit_dirs: tuple[Path, Path], vision_dirs: tuple[Path, Path], family: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The registry's AIMv2 entries pin Apple-layout revisions: the real loading path (hub snapshot
    -> conversion in the cache -> transformers' class) gives the native model's vectors."""

    import huggingface_hub.constants

    from marsbench.encoder.adapters import RuntimeOptions, load_model
    from marsbench.encoder.registry import ModelSpec

    native, apple = lit_dirs if family == "hf_aimv2" else vision_dirs
    revision = "ab" * 20
    shutil.copytree(apple, tmp_path / "models--apple--tiny" / "snapshots" / revision)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    extra = {} if family == "hf_aimv2" else {"modalities": ["image"], "options": {"pooling": "mean"}}
    options = RuntimeOptions(device="cpu", cache_dir=str(tmp_path))
    hub = load_model(
        ModelSpec.model_validate(
            {"name": "hub", "family": family, "source": "hf-hub:apple/tiny", "revision": revision} | extra
        ),
        options,
    )
    local = load_model(ModelSpec.model_validate(
        {"name": "local", "family": family, "source": f"local-dir:{native}"} | extra), options)  # fmt: skip
    pixels = _pixels(2)
    np.testing.assert_allclose(hub.embed_images(pixels), local.embed_images(pixels), atol=1e-6)
    if family == "hf_aimv2":
        np.testing.assert_allclose(hub.embed_texts(["a crater"]), local.embed_texts(["a crater"]), atol=1e-6)
    assert list((tmp_path / "marsbench-converted").iterdir()), "the converted folder lives in the cache"

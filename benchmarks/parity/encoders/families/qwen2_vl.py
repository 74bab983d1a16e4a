"""The Qwen2-VL-2B embedders: GME, VLM2Vec-V2.0, B3++ and Ops-MM-embedding-v1.

Each case writes a tiny random Qwen2-VL (tests/encoder/mllm/tiny_qwen2_vl.py: 2 text layers of
width 32, a 1-block vision tower, a byte-level BPE of 800 tokens + Qwen2-VL's special tokens) in
the layout its hub repository has, which is the layout of transformers < 4.52 (the one the
reference environments load): a flat `config.json` (`rope_scaling` of type `mrope`), weights named
`model.*` (text decoder) and `visual.*` (vision tower), `preprocessor_config.json` of
`Qwen2VLImageProcessor`, `tokenizer.json` + `vocab.json` + `merges.txt` + `tokenizer_config.json`.
transformers 5 (marsbench) writes none of these the old way, so they are written here by hand.

Every weight is rounded to a bf16-representable fp32 value: VLM2Vec's loader and Ops-MM's class
load the weights in bf16 whatever the device (VLM2Vec's builder then casts the model to fp32 on the
CPU), so only weights that survive a bf16 round trip give both sides the same fp32 model.

- gme: the hub remote code (`modeling_gme_qwen2vl.py`, `auto_map` in config.json) beside the
  weights, run by the reference in transformers 4.51.3 (its `require_version("transformers<4.52")`).
- vlm2vec / b3: a LoRA (vlm2vec) or DoRA (b3) adapter folder (`adapter_config.json` naming a base
  folder written beside it, adapter tensors under the old module names, config and processor
  files), run by TIGER-AI-Lab/VLM2Vec at the transformers its requirements pin (4.52.3). The vlm2vec
  folder's tokenizer pads on the left, b3's on the right (transformers' default), so both of the
  sides VLM2Vec's collator can pad on are checked.
- ops-mm: `ops_mm_embedding_v1.py` beside the weights, run in transformers 4.57.3.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from benchmarks.parity.encoders.cases import Case, Environment, Source
from benchmarks.parity.encoders.environments import REFERENCE_ENV

REFERENCE = "qwen2_vl.py"

VLM2VEC_COMMIT = "6e1e1d42d4cba85ae4db4d3f7a25cba2465d1e16"
GME_COPY_COMMIT = "a13033c3d9e74a627cda980cb08cac99b8e76fbc"

THIRD_PARTY: tuple[Source, ...] = (
    Source(
        name="vlm2vec",
        repo="https://github.com/TIGER-AI-Lab/VLM2Vec",
        commit=VLM2VEC_COMMIT,
        paths=(),  # the whole tree: src/model/processor.py imports every backbone it knows
        sha256={
            "src/model/model.py": "50cbffb990ff772747cf93557a84310699358f5d00c52b847e21d81caa29b393",
            "src/model/processor.py": "456d128fc27deb37e842608b9683d94a3807a63257ed6cc50baffeb8a2f7d8ec",
            "src/model/vlm_backbone/qwen2_vl/modeling_qwen2_vl.py": (
                "5165b205992d0ed1653e098e1407eaf1b7fb859561e2a3710e028d61c753b960"
            ),
            "src/model/vlm_backbone/qwen2_vl/image_processing_qwen2_vl.py": (
                "5e8968219c7c768babbded613e6533d8fbe5a6227d96a30e49fbe44bf9fc047c"
            ),
            "src/model/vlm_backbone/qwen2_vl/processing_qwen2_vl.py": (
                "f0590a47b43b67569ee28700d4dad905c9518852f1d4e85a8b349efa3c23c8e3"
            ),
            "src/arguments.py": "a2d8dadda0d2ee830e13bffd559ca7201fd3438152669a0242d1e08998f77914",
        },
        what="TIGER-AI-Lab/VLM2Vec, cloned as the reference's third_party/vlm2vec (its INSTALL.md clones "
        "the default branch unpinned; this is the newest commit seen)",
    ),
    Source(
        name="gme",
        repo="https://github.com/maple543/gmenet",
        commit=GME_COPY_COMMIT,
        paths=("modeling_gme_qwen2vl.py",),
        sha256={
            "modeling_gme_qwen2vl.py": "b21b5071fcbba5ab71bfa2667c82f446c32d7d27b42148c7571c5d59f940e8c4"
        },
        what="hub remote code of Alibaba-NLP/gme-Qwen2-VL-2B-Instruct (modeling_gme_qwen2vl.py), a public "
        "copy; a second copy (Word2VecT/Interactive-Multimodal-Information-Retrieval-System@a6afed99) has "
        "the same text up to trailing whitespace; the hub file itself could not be read from here",
    ),
    Source(
        name="ops_mm_embedding",
        repo="https://huggingface.co/OpenSearch-AI/Ops-MM-embedding-v1-2B",
        commit="",
        paths=("ops_mm_embedding_v1.py",),
        sha256={"ops_mm_embedding_v1.py": "47881266ccde12a241b6f0d65d9107851cda58aec4da6e3ec0bada5d440a46b6"},
        what="hub file ops_mm_embedding_v1.py of OpenSearch-AI/Ops-MM-embedding-v1-2B (the reference's "
        "third_party/ops_mm_embedding is a clone of that repository). Neither the hub nor a GitHub copy "
        "with a nameable repository and commit could be reached: the text is a public copy from the "
        "search index (11,310 characters), so no commit is given",
    ),
)

ENVS: tuple[Environment, ...] = (
    Environment(
        "tf-4.51.3",
        (
            "transformers==4.51.3",
            "qwen-vl-utils==0.0.14",
            "accelerate",
            "peft>=0.15.2",
            "einops",
            "timm",
            "sentencepiece",
            "scipy",
            "pandas",
            "scikit-learn",
            "open_clip_torch",
        ),
    ),
    Environment(
        "vlm2vec",
        (
            # TIGER-AI-Lab/VLM2Vec requirements.txt pins transformers==4.52.3, numpy==1.26.4 and
            # qwen-vl-utils==0.0.8. Its src/model/processor.py imports every backbone, which needs
            # scikit-image and cv2 (opencv-python there; the headless build here, same module) at
            # import time. flash-attn (CUDA only; a stand-in for its two import-time names, see
            # reference/qwen2_vl.py), decord, wandb, ray and the training tools are not installed.
            "transformers==4.52.3",
            "numpy==1.26.4",
            "qwen-vl-utils==0.0.8",
            "peft",
            "accelerate",
            "einops",
            "timm",
            "sentencepiece",
            "scipy",
            "pillow",
            "scikit-learn",
            "pandas",
            "scikit-image",
            "opencv-python-headless",
        ),
        python_path=("vlm2vec",),
    ),
)


# -- the tiny model in the hub (transformers < 4.52) layout ---------------------------------------


def _old_key(key: str) -> str | None:
    """A transformers 5 Qwen2VLForConditionalGeneration key as the hub checkpoints name it."""
    if key == "lm_head.weight":
        return None  # tied to the input embeddings (tie_word_embeddings), not stored
    if key.startswith("model.language_model."):
        return "model." + key.removeprefix("model.language_model.")
    if key.startswith("model.visual."):
        return "visual." + key.removeprefix("model.visual.")
    raise ValueError(f"unexpected Qwen2-VL weight {key}")


def _bf16_exact(module: Any) -> Any:
    """Round every parameter to the nearest bf16 value, kept in fp32 (see the module docstring)."""
    import torch

    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(parameter.to(torch.bfloat16).to(torch.float32))
    return module


def _flat_config(model: Any, **extra: Any) -> dict[str, Any]:
    """config.json as the Qwen2-VL hub repositories have it (transformers 4.45-4.51 layout)."""
    from tests.encoder.mllm import tiny_qwen2_vl as tiny

    config = model.config
    text = config.text_config
    vision = config.vision_config
    rope = dict(getattr(text, "rope_parameters", None) or {})
    flat: dict[str, Any] = {
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "model_type": "qwen2_vl",
        "vocab_size": text.vocab_size,
        "hidden_size": text.hidden_size,
        "intermediate_size": text.intermediate_size,
        "num_hidden_layers": text.num_hidden_layers,
        "num_attention_heads": text.num_attention_heads,
        "num_key_value_heads": text.num_key_value_heads,
        "hidden_act": text.hidden_act,
        "max_position_embeddings": text.max_position_embeddings,
        "max_window_layers": text.num_hidden_layers,
        "rms_norm_eps": text.rms_norm_eps,
        "rope_theta": float(rope.get("rope_theta", 10000.0)),
        "rope_scaling": {"type": "mrope", "mrope_section": list(rope["mrope_section"])},
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "sliding_window": text.max_position_embeddings,
        "use_sliding_window": False,
        "use_cache": True,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "bos_token_id": tiny.TOKEN_ID["<|endoftext|>"],
        "eos_token_id": tiny.TOKEN_ID["<|im_end|>"],
        "vision_start_token_id": tiny.TOKEN_ID["<|vision_start|>"],
        "vision_end_token_id": tiny.TOKEN_ID["<|vision_end|>"],
        "vision_token_id": tiny.TOKEN_ID["<|vision_pad|>"],
        "image_token_id": tiny.TOKEN_ID["<|image_pad|>"],
        "video_token_id": tiny.TOKEN_ID["<|video_pad|>"],
        "vision_config": {
            "depth": vision.depth,
            "embed_dim": vision.embed_dim,
            "hidden_size": vision.hidden_size,
            "hidden_act": vision.hidden_act,
            "mlp_ratio": vision.mlp_ratio,
            "num_heads": vision.num_heads,
            "in_chans": 3,
            "patch_size": vision.patch_size,
            "spatial_merge_size": vision.spatial_merge_size,
            "temporal_patch_size": vision.temporal_patch_size,
        },
        "transformers_version": "4.45.0.dev0",
    }
    return flat | extra


def _write_weights(folder: Path, model: Any, **config_extra: Any) -> None:
    from safetensors.torch import save_file

    state = {}
    for key, value in model.state_dict().items():
        old = _old_key(key)
        if old is not None:
            state[old] = value.detach().to("cpu").contiguous().clone()
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(_flat_config(model, **config_extra), indent=2))


def _write_processor_files(folder: Path, *, padding_side: str | None = None) -> None:
    """Tokenizer and image-processor files in the hub's (pre-transformers-5) layout."""
    from tests.encoder.mllm import tiny_qwen2_vl as tiny

    tokenizer = json.loads(tiny.tokenizer_json())
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    bpe = tokenizer["model"]
    (folder / "vocab.json").write_text(json.dumps(bpe["vocab"], ensure_ascii=False))
    merges = [m if isinstance(m, str) else " ".join(m) for m in bpe["merges"]]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    special = {
        str(tiny.TOKEN_ID[token]): {
            "content": token,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for token in tiny.SPECIAL_TOKENS
    }
    tokenizer_config: dict[str, Any] = {
        "add_prefix_space": False,
        "added_tokens_decoder": special,
        "additional_special_tokens": [t for t in tiny.SPECIAL_TOKENS if t != "<|endoftext|>"],
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 32768,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    if padding_side is not None:
        tokenizer_config["padding_side"] = padding_side
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    preprocessor = {
        "min_pixels": 3136,
        "max_pixels": 12845056,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2VLProcessor",
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))


def _tiny_model(seed: int) -> Any:
    from tests.encoder.mllm import tiny_qwen2_vl as tiny

    return _bf16_exact(tiny.random_model(seed))


def _copy_checked(third_party: Path, source: str, name: str, folder: Path) -> None:
    """Copy a fetched third-party file into the model folder, refusing one whose hash differs."""
    [spec] = [s for s in THIRD_PARTY if s.name == source]
    path = third_party / source / name
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    expected = spec.sha256.get(name)
    if expected and digest != expected:
        raise RuntimeError(f"{path}: sha256 {digest}, the manifest says {expected}")
    shutil.copyfile(path, folder / name)


def _write_gme(folder: Path, third_party: Path, max_length: int) -> None:
    """gme-Qwen2-VL-2B-Instruct's layout: GmeQwen2VL remote code, weights without an LM head."""
    folder.mkdir(parents=True, exist_ok=True)
    _write_weights(
        folder,
        _tiny_model(seed=11),
        architectures=["GmeQwen2VL"],
        auto_map={
            "AutoConfig": "modeling_gme_qwen2vl.GmeQwen2VLConfig",
            "AutoModel": "modeling_gme_qwen2vl.GmeQwen2VL",
        },
        min_image_tokens=256,
        max_image_tokens=1280,
        max_length=max_length,
    )
    _write_processor_files(folder)
    _copy_checked(third_party, "gme", "modeling_gme_qwen2vl.py", folder)


def build_gme(folder: Path, third_party: Path) -> dict[str, Any]:
    _write_gme(folder, third_party, max_length=1800)
    return {"source": f"local-dir:{folder}"}


# GME's prompts of the shared texts are 36, 59, 67, 122 and 378 tokens long with the tiny tokenizer:
# at 64, the last three are cut (the pooled token is then the last kept one, not <|endoftext|>).
GME_SHORT_MAX_LENGTH = 64


def build_gme_truncated(folder: Path, third_party: Path) -> dict[str, Any]:
    """GME whose config.json says max_length 64 (GME's code reads it there); marsbench's registry
    option says the same, the other options kept as built in."""
    from marsbench.encoder.registry import builtin_specs

    _write_gme(folder, third_party, max_length=GME_SHORT_MAX_LENGTH)
    options = dict(builtin_specs()["gme-qwen2-vl-2b"].options) | {"max_length": GME_SHORT_MAX_LENGTH}
    return {"source": f"local-dir:{folder}", "options": options}


def build_ops_mm(folder: Path, third_party: Path) -> dict[str, Any]:
    """Ops-MM-embedding-v1-2B's layout: a plain Qwen2-VL checkpoint plus ops_mm_embedding_v1.py."""
    folder.mkdir(parents=True, exist_ok=True)
    _write_weights(folder, _tiny_model(seed=13))
    _write_processor_files(folder)
    _copy_checked(third_party, "ops_mm_embedding", "ops_mm_embedding_v1.py", folder)
    return {"source": f"local-dir:{folder}"}


def _build_adapter(folder: Path, *, seed: int, use_dora: bool, padding_side: str | None) -> dict[str, Any]:
    """A VLM2Vec-style repository: adapter over a base written beside it (`<folder>-base`)."""
    import torch
    from safetensors.torch import load_file, save_file

    from tests.encoder.mllm import tiny_qwen2_vl as tiny

    base_folder = folder.parent / f"{folder.name}-base"
    shutil.rmtree(base_folder, ignore_errors=True)
    base_folder.mkdir(parents=True)
    base = _tiny_model(seed)
    _write_weights(base_folder, base)
    _write_processor_files(base_folder)

    folder.mkdir(parents=True, exist_ok=True)
    wrapped = tiny.lora_model(base, seed=seed + 1, use_dora=use_dora)
    with torch.no_grad():
        for name, parameter in wrapped.named_parameters():
            if "lora_" in name:
                parameter.copy_(parameter.to(torch.bfloat16).to(torch.float32))
    wrapped.save_pretrained(folder)
    weights = load_file(folder / "adapter_model.safetensors")
    save_file(
        {tiny.old_layout_key(k): v.contiguous() for k, v in weights.items()},
        folder / "adapter_model.safetensors",
        metadata={"format": "pt"},
    )
    adapter_config = json.loads((folder / "adapter_config.json").read_text())
    adapter_config["base_model_name_or_path"] = str(base_folder)
    (folder / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2))
    (folder / "config.json").write_text(json.dumps(_flat_config(base), indent=2))
    _write_processor_files(folder, padding_side=padding_side)
    return {"source": f"local-dir:{folder}"}


def build_vlm2vec(folder: Path, third_party: Path) -> dict[str, Any]:
    return _build_adapter(folder, seed=21, use_dora=False, padding_side="left")


def build_b3(folder: Path, third_party: Path) -> dict[str, Any]:
    return _build_adapter(folder, seed=31, use_dora=True, padding_side=None)


_SDPA = (
    "attention: SDPA on both sides (the reference runs FlashAttention-2 for VLM2Vec/B3/Ops-MM, which "
    "cannot run on a CPU; the reference side sets the attention implementation to sdpa, nothing else)"
)

CASES: list[Case] = [
    Case(
        name="gme",
        models=("gme-qwen2-vl-2b",),
        env="tf-4.51.3",
        build=build_gme,
        reference=REFERENCE,
        third_party=("gme",),
        notes="hub remote code from a public copy (see THIRD_PARTY); config.json and "
        "preprocessor_config.json written as Qwen2-VL hub repositories have them (the GME hub files "
        "could not be read)",
    ),
    Case(
        name="gme-truncated",
        models=("gme-qwen2-vl-2b",),
        env="tf-4.51.3",
        build=build_gme_truncated,
        reference=REFERENCE,
        modalities=("text",),
        third_party=("gme",),
        notes=f"texts cut at {GME_SHORT_MAX_LENGTH} tokens (config max_length; registry option max_length); "
        "text only, since a cut image prompt loses image tokens in both codes",
    ),
    Case(
        name="vlm2vec",
        models=("vlm2vec-v2",),
        env="vlm2vec",
        build=build_vlm2vec,
        reference=REFERENCE,
        third_party=("vlm2vec",),
        notes=f"LoRA adapter, tokenizer padding left; {_SDPA}; images compared after the process's first "
        "forward call (VLM2Vec caches rope deltas there; that call's vectors are saved apart as "
        "image_first_call); flash_attn stand-in for two import-time names of VLM2Vec's InternVideo2",
    ),
    Case(
        name="b3",
        models=("b3-qwen2-2b",),
        env="vlm2vec",
        build=build_b3,
        reference=REFERENCE,
        third_party=("vlm2vec",),
        notes=f"DoRA adapter, tokenizer padding right (the B3 hub layout could not be read); {_SDPA}; "
        "images compared after the first forward call, as for vlm2vec",
    ),
    Case(
        name="ops-mm",
        models=("ops-mm-embedding-v1-2b",),
        env=REFERENCE_ENV,
        build=build_ops_mm,
        reference=REFERENCE,
        third_party=("ops_mm_embedding",),
        notes="the hub class loads bf16 always: the reference side makes its from_pretrained load fp32 "
        f"(nothing else changed); {_SDPA}",
    ),
    Case(
        name="ops-mm-bf16",
        models=("ops-mm-embedding-v1-2b",),
        env=REFERENCE_ENV,
        build=build_ops_mm,
        reference=REFERENCE,
        third_party=("ops_mm_embedding",),
        encoder={"cpu_precision": "reference"},
        notes="the reference as it runs, bf16 weights on the CPU, against marsbench under "
        f"MARSBENCH_ENCODER_CPU_PRECISION=reference (the registry's cpu_precision bf16); {_SDPA}",
    ),
]

"""Qwen3-VL-Embedding: marsbench's `qwen3_vl_embedding` adapter against the reference's
`models/qwen3_vl_embedding.py`, which imports `Qwen3VLEmbedder` from the hub script
`scripts/qwen3_vl_embedding.py` of Qwen/Qwen3-VL-Embedding-2B (docs/INSTALL.md: `wget .../raw/main/
scripts/qwen3_vl_embedding.py` into `third_party/qwen3_vl_embedding/`).

The hub script is not reachable offline; QwenLM's own repository publishes the same embedder as
`src/models/qwen3_vl_embedding.py` (the model card points there), used here at its newest commit
before the reference's (1b7caa8, 2026-02-17).

Also home of the helpers the MLLM cases share to make a folder that transformers 5 writes load the
same in transformers 4.57 (the reference's pin): `legacy_hub_layout`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from benchmarks.parity.encoders.cases import Case, Source
from benchmarks.parity.encoders.environments import REFERENCE_ENV

QWEN3_SOURCE = Source(
    name="qwen3_vl_embedding",
    repo="https://github.com/QwenLM/Qwen3-VL-Embedding",
    commit="8ce3aab1fbcc7b7143b094f0b2005dd89e7246b9",
    paths=("src/models/qwen3_vl_embedding.py",),
    sha256={
        "src/models/qwen3_vl_embedding.py": "0e447b6a80e05527f3fd437ab4f1617a6e7d0df102b8164348bbce787a41b267"
    },
    what=(
        "Qwen3VLEmbedder, the code the hub script scripts/qwen3_vl_embedding.py of "
        "Qwen/Qwen3-VL-Embedding-2B carries (QwenLM's repository copy; the hub file itself was not "
        "reachable offline, so byte identity with it is not verified)"
    ),
)

THIRD_PARTY = [QWEN3_SOURCE]


# -- transformers 5 -> 4.57 folder layout --------------------------------------------------------


def _legacy_rope(section: dict[str, Any]) -> None:
    """transformers 5's `rope_parameters` as 4.57 reads it: `rope_theta` plus `rope_scaling`
    (None for plain RoPE; the M-RoPE fields otherwise), the form the hub configs have."""
    params = section.pop("rope_parameters", None)
    if not isinstance(params, dict):
        return
    params = dict(params)
    section["rope_theta"] = params.pop("rope_theta", 10000.0)
    rope_type = params.get("rope_type", "default")
    extra = {k: v for k, v in params.items() if k != "rope_type"}
    if rope_type == "default" and not extra:
        section["rope_scaling"] = None
    else:
        section["rope_scaling"] = {"rope_type": rope_type, "type": rope_type, **extra}


def legacy_config(folder: Path, **extra: Any) -> dict[str, Any]:
    """Rewrite config.json so that transformers 4.57 builds the same model: the text model's
    rope settings in the pre-5 form (4.57 ignores `rope_parameters` and would fall back to
    theta 10,000). Extra keys (e.g. `auto_map`) are merged in. Returns the new config."""
    path = folder / "config.json"
    config = json.loads(path.read_text())
    _legacy_rope(config)
    text = config.get("text_config")
    if isinstance(text, dict):
        _legacy_rope(text)
    config.update(extra)
    path.write_text(json.dumps(config, indent=2))
    return config


def legacy_tokenizer_config(folder: Path, tokenizer_class: str) -> None:
    """tokenizer_config.json in the form both versions read: a class name 4.57 knows
    (transformers 5 writes `TokenizersBackend`), the special tokens as
    `additional_special_tokens` (5 writes a list under `extra_special_tokens`, which 4.57 takes
    for a name -> token mapping)."""
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["tokenizer_class"] = tokenizer_class
    config.pop("backend", None)
    extra = config.pop("extra_special_tokens", None)
    if isinstance(extra, list) and extra:
        config["additional_special_tokens"] = extra
    elif isinstance(extra, dict) and extra:
        config["extra_special_tokens"] = extra
    path.write_text(json.dumps(config, indent=2))


def split_processor(folder: Path, processor: Any) -> None:
    """The hub layout of a processor: `preprocessor_config.json` (image processor) and, where the
    processor has one, `video_preprocessor_config.json`, instead of transformers 5's single
    `processor_config.json` with the components nested (4.57 would pass those as arguments)."""
    combined = folder / "processor_config.json"
    if combined.exists():
        combined.unlink()
    processor.image_processor.save_pretrained(folder)
    video = getattr(processor, "video_processor", None)
    if video is not None:
        video.save_pretrained(folder)
    # transformers 5 may name the image processor's file processor_config.json as well.
    if not (folder / "preprocessor_config.json").exists():
        raise RuntimeError(f"{folder}: the image processor wrote no preprocessor_config.json")
    template = getattr(processor, "chat_template", None)
    if template and not (folder / "chat_template.jinja").exists():
        (folder / "chat_template.jinja").write_text(template)


# -- the case ------------------------------------------------------------------------------------


def build_qwen3(folder: Path, third_party: Path) -> dict[str, Any]:
    """A tiny Qwen3-VL-Embedding as the hub lays it out (`Qwen3VLModel` weights under `model.`,
    processor files, chat template); the reference loads it with its own classes (no remote code)."""
    from tests.encoder.mllm.tiny_qwen_vl import qwen3_vl_processor, write_tiny_qwen3_vl_embedding

    if folder.exists():
        shutil.rmtree(folder)
    write_tiny_qwen3_vl_embedding(folder)
    processor = qwen3_vl_processor()
    split_processor(folder, processor)
    config = legacy_config(folder)
    legacy_tokenizer_config(folder, "Qwen2Tokenizer")
    return {
        "source": f"local-dir:{folder}",
        "dimension": int(config["text_config"]["hidden_size"]),
    }


CASES = [
    Case(
        name="qwen3-vl-embedding",
        models=("qwen3-vl-embedding-2b",),
        env=REFERENCE_ENV,
        build=build_qwen3,
        reference="qwen3_vl.py",
        third_party=("qwen3_vl_embedding",),
        notes=(
            "reference: models/qwen3_vl_embedding.py imports `from scirpts import Qwen3VLEmbedder` "
            "(a typo for the hub script's module); the reference side registers the fetched "
            "Qwen3VLEmbedder under that name. The embedder is QwenLM's published copy of the hub "
            "script (identity with the hub file not verifiable offline). Tiny model's chat "
            "template: tests' CHAT_TEMPLATE, not the real Qwen3-VL one."
        ),
    )
]

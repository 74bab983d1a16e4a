"""What one family's cross-check needs: a tiny random model, its registry table, the reference side.

A case module under `families/` defines `CASES: list[Case]`, and may declare the reference
environments (`ENVS`) and the third-party sources (`THIRD_PARTY`) its cases need; the runner
(`benchmarks/parity/encoder_parity.py`) discovers every module there.

The reference side of a case is a script under `reference/`, run by the case's environment's
interpreter (never marsbench's) as

    python reference/<script> --case NAME --reference REF_CHECKOUT --third-party TP_DIR \
        --model MODEL_DIR --inputs INPUTS_DIR --out OUT.npz

It imports the reference's own encoder classes from REF_CHECKOUT (MarsRetrieval at 1b7caa8),
embeds the shared inputs in one batch per modality, and writes `image` (N x D float32) and, for
models with a text tower, `text` (M x D float32) to OUT.npz, plus `meta`: a JSON string with at
least `transformers` (version) and `image_processor` (class name of the processor that ran).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Writes the tiny random model into the folder (in the hub layout the reference loads, remote-code
# files included, copied from the third-party folder) and returns the registry-table fields that
# point marsbench at it (at least `source = "local-dir:<folder>"`). Those fields complete the
# built-in entry `models[0]`, so every other setting is the one users get.
Build = Callable[[Path, Path], dict[str, Any]]


@dataclass(frozen=True)
class Case:
    name: str  # row of the table, e.g. "bge-vl"
    models: tuple[str, ...]  # registry names it stands for, e.g. ("bge-vl-large",)
    env: str  # name of the reference environment that runs the reference side
    build: Build
    reference: str  # script under reference/
    modalities: tuple[str, ...] = ("image", "text")
    third_party: tuple[str, ...] = ()  # names of THIRD_PARTY sources the case needs
    notes: str = ""  # what stood in for code that could not be run, said in the table's notes
    # Modules marsbench's side imports before loading (e.g. to register tiny timm towers under a
    # name the tiny config gives); the reference script imports what it needs itself.
    imports: tuple[str, ...] = ()
    # Encoder settings for marsbench's side (EncoderSettings fields), e.g. {"cpu_precision":
    # "reference"} to compare with the reference's own CPU dtype instead of fp32.
    encoder: dict[str, str] = field(default_factory=dict)
    # Set for a comparison outside the fp32 claim (e.g. the reference's own bf16): why it is not
    # expected to meet the tolerance. Its numbers are reported ("info"), not counted as a failure.
    informational: str = ""


@dataclass(frozen=True)
class Environment:
    """A reference environment: its own venv with the versions the reference path pins."""

    name: str
    requirements: tuple[str, ...]  # pip requirement strings, e.g. "transformers==4.57.3"
    python_path: tuple[str, ...] = ()  # third-party source names put on sys.path (e.g. VLM2Vec)


@dataclass(frozen=True)
class Source:
    """Public third-party code the reference path loads, fetched at a known revision (never vendored)."""

    name: str
    repo: str  # clone URL, e.g. "https://github.com/TIGER-AI-Lab/VLM2Vec"
    commit: str  # 40-hex commit
    paths: tuple[str, ...] = ()  # files needed (empty: the whole tree)
    sha256: dict[str, str] = field(default_factory=dict)  # path -> sha256 of the file as fetched
    what: str = ""  # e.g. "hub remote code of jinaai/jina-embeddings-v4, a copy at this revision"

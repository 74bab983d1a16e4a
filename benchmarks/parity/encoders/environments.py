"""The reference's main environment, shared by every case that runs under its transformers pin.

The reference's requirements.txt pins transformers==4.57.3 and asks for open-clip-torch>=2.24.0,
timm>=0.9.12, peft>=0.15.2, qwen-vl-utils==0.0.14, accelerate and einops. Unpinned ones are set to
the versions marsbench runs (so that a difference is the adapter's, not open_clip's or timm's),
except peft: at 0.21.2 (what an unpinned install gets) jina-embeddings-v4's multi-task adapter loads
nothing (its `lora_A.<task>.weight` keys stay unexpected, peft only warns, every LoRA keeps B = 0),
so the requirement's floor, 0.15.2, is used. torch and torchvision are installed first from this
machine's disk (the reference pins torch 2.8.0, which is not installable here).

GME (transformers 4.51.3) and VLM2Vec (its own pins) have environments of their own
(`families/qwen2_vl.py`).
"""

from __future__ import annotations

from benchmarks.parity.encoders.cases import Environment

REFERENCE_ENV = "ref-hf457"
ENVS = [
    Environment(
        name=REFERENCE_ENV,
        requirements=(
            "transformers==4.57.3",
            "open_clip_torch==3.3.0",
            "timm==1.0.31",
            "peft==0.15.2",
            "qwen-vl-utils==0.0.14",
            "accelerate",
            "einops",
            "numpy",
            "pillow",
            "safetensors",
            "sentencepiece",
        ),
    )
]

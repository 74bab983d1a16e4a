"""Tiny random models of every transformers family we serve, saved as their hub repos lay them out.

Each builder writes config, weights (safetensors), image processor and, for two-tower models, a
real CLIP BPE tokenizer generated from the vocabulary open_clip ships (no download), so that the
adapters load them through exactly the path they use for the hub models.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

import torch

IMAGE_SIZE = 32
MEAN = [0.5, 0.4, 0.3]
STD = [0.2, 0.25, 0.3]
CONTEXT = 16


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: printable bytes map to themselves, the rest above 255."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    keep += list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, (chr(c) for c in chars), strict=True))


@lru_cache(maxsize=1)
def clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """CLIP's 49,408-token vocabulary and merges, rebuilt from open_clip's bundled BPE file."""
    import open_clip.tokenizer as oct

    path = Path(oct.__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    alphabet = list(_bytes_to_unicode().values())
    vocab = alphabet + [c + "</w>" for c in alphabet] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(vocab)}, merges


def write_clip_tokenizer(folder: Path, *, max_length: int = CONTEXT) -> None:
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    tokenizer.model_max_length = max_length
    tokenizer.save_pretrained(folder)


def _clip_image_processor(folder: Path, size: int = IMAGE_SIZE) -> None:
    from transformers import CLIPImageProcessor

    CLIPImageProcessor(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=MEAN,
        image_std=STD,
    ).save_pretrained(folder)


# Tiny widths shared by every tower: one or two layers of 32 wide, two heads.
TOWER = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2}
VISION = TOWER | {"image_size": IMAGE_SIZE, "patch_size": 8}
TEXT = TOWER | {"vocab_size": 49408, "max_position_embeddings": CONTEXT, "eos_token_id": 49407}


def _save(model: torch.nn.Module, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def write_tiny_clip_hf(folder: Path, seed: int = 0) -> Path:
    """BGE-VL's layout: a transformers CLIPModel with CLIPProcessor files."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=TEXT | {"num_hidden_layers": 1, "bos_token_id": 49406},
        vision_config=VISION | {"num_hidden_layers": 1},
        projection_dim=24,
    )
    _save(CLIPModel(config).eval(), folder)
    _clip_image_processor(folder)
    write_clip_tokenizer(folder)
    return folder


def write_tiny_aimv2(folder: Path, seed: int = 0) -> Path:
    """aimv2-large-patch14-224-lit's layout: Aimv2Model (attention-pooling head) + CLIP tokenizer.
    Two text layers, so that attending to later tokens would change the EOS state."""
    from transformers import Aimv2Config, Aimv2Model

    torch.manual_seed(seed)
    config = Aimv2Config(
        text_config=TEXT | {"num_hidden_layers": 2},
        vision_config=VISION | {"num_hidden_layers": 1, "use_head": True},
        projection_dim=24,
    )
    _save(Aimv2Model(config).eval(), folder)
    _clip_image_processor(folder)
    write_clip_tokenizer(folder)
    return folder


def write_tiny_aimv2_vision(folder: Path, seed: int = 0) -> Path:
    """aimv2-large-patch14-448's layout: an Aimv2VisionModel without head, image processor only."""
    from transformers import Aimv2VisionConfig, Aimv2VisionModel

    torch.manual_seed(seed)
    config = Aimv2VisionConfig(**VISION, num_hidden_layers=2, use_head=False)
    _save(Aimv2VisionModel(config).eval(), folder)
    _clip_image_processor(folder)
    return folder


def write_tiny_dinov3(folder: Path, seed: int = 0) -> Path:
    """dinov3-vitl16's layout: DINOv3ViTModel with register tokens, its own image processor."""
    from transformers import DINOv3ViTConfig, DINOv3ViTImageProcessor, DINOv3ViTModel

    torch.manual_seed(seed)
    config = DINOv3ViTConfig(**VISION, num_hidden_layers=2, num_register_tokens=2)
    _save(DINOv3ViTModel(config).eval(), folder)
    DINOv3ViTImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=MEAN, image_std=STD
    ).save_pretrained(folder)
    return folder

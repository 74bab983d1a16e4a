"""Train marsbench-tiny: a small open_clip CLIP model for the synthetic Mars datasets, on CPU.

The model exists so that the whole stack (encoder, indexer, evaluator) runs through the same
open_clip code path as the real models, in CI and on laptops, with scores clearly above chance.

It trains contrastively on image-caption pairs from a synthetic set drawn with a seed other than
the demo's (seed 0): landform images with the benchmark's three prompt templates, geo tiles and
query images with their landform names, and paired images with their descriptive captions.
It then evaluates on the held-out seed-0 small set with the benchmark's own protocol (landform
text-to-image mAP, paired R@1) and writes `open_clip_config.json` and
`open_clip_model.safetensors` (fp16) for `open_clip.create_model_and_transforms("local-dir:...")`.

    python training/train_tiny.py --out services/encoder/src/marsbench/encoder/assets/marsbench-tiny
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import shutil
import tarfile
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import pyarrow.parquet as pq
import torch
from PIL import Image
from safetensors.torch import save_file
from torch.nn.functional import log_softmax, normalize

from marsbench.datasets.synth import GEO_LANDFORMS, THUMB_SUBDIR, synthesize, tile_name
from marsbench.encoder.adapters.open_clip import Preprocess, Tokenizer
from marsbench.training.loop import trainable_clip

DEMO_SEED = 0  # the seed of the demo / evaluation set; training must never use it
TEMPLATES = (
    "a photo of {}, a type of martian terrain",
    "a satellite photo of {}.",
    "a high-resolution remote sensing image of {} on Mars.",
)
PAIRED_CAPTION_KEYS = ("ori_caption", "refined_caption", "qwen3_fused_caption")
EVAL_CAPTION_KEY = "refined_caption"  # the protocol's default caption key

MODEL_CFG: dict[str, Any] = {
    "embed_dim": 128,
    # 16 patches of 16 px and average pooling: cheap enough on CPU, and trains fast from scratch.
    "vision_cfg": {
        "image_size": 64,
        "patch_size": 16,
        "width": 160,
        "layers": 4,
        "head_width": 32,
        "pool_type": "avg",
    },
    # The SimpleTokenizer's vocabulary fixes vocab_size; the width is small because the token
    # table (49,408 x width) is most of the file. The longest synthetic caption is 61 tokens.
    "text_cfg": {"context_length": 64, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 3},
}
PREPROCESS_CFG: dict[str, Any] = {
    "mean": [0.5, 0.5, 0.5],
    "std": [0.25, 0.25, 0.25],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}


def phrase(name: str) -> str:
    """The protocol's class phrase: underscores and hyphens become spaces."""
    return name.replace("_", " ").replace("-", " ")


def prompts(name: str) -> list[str]:
    return [t.format(phrase(name)) for t in TEMPLATES]


# ---------------------------------------------------------------- reading the synthetic layouts


def read_landform(dataset_dir: Path) -> tuple[list[str], list[tuple[str, bytes, int]]]:
    """(class names, [(image_id, png, label)]) from the HF parquet shards."""
    files = sorted((dataset_dir / "data").glob("*.parquet"))
    meta = json.loads(pq.read_schema(files[0]).metadata[b"huggingface"])
    names = list(meta["info"]["features"]["label"]["names"])
    rows: list[tuple[str, bytes, int]] = []
    for path in files:
        for row in pq.read_table(path).to_pylist():
            rows.append((row["image_id"], row["image"]["bytes"], int(row["label"])))
    return names, rows


def iter_tar_groups(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(basename, {extension: bytes}) per sample of a WebDataset shard, in shard order."""
    groups: dict[str, dict[str, bytes]] = defaultdict(dict)
    with tarfile.open(path) as tar:
        for member in tar:
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None:
                base, _, ext = member.name.rpartition(".")
                groups[base][ext.lower()] = handle.read()
    yield from groups.items()


def read_paired(dataset_dir: Path) -> list[tuple[str, bytes, dict[str, str]]]:
    """[(key, jpeg, {caption_key: caption})] from the WebDataset shards."""
    out = []
    for shard in sorted(dataset_dir.glob("*.tar")):
        for key, members in iter_tar_groups(shard):
            meta = json.loads(members["json"])
            out.append((key, members["jpg"], {k: meta[k] for k in PAIRED_CAPTION_KEYS}))
    return out


def read_geo_landforms(dataset_dir: Path) -> list[tuple[bytes, str]]:
    """[(png, catalogue name)]: every tile holding a catalogue point, and the query images."""
    tile_owner: dict[tuple[int, int], str] = {}
    for name in GEO_LANDFORMS:
        with (dataset_dir / "ground_truth" / f"{name}.csv").open() as f:
            for row in csv.DictReader(f):
                tile = (math.floor(float(row["lon"]) * 5) * 2, math.floor(float(row["lat"]) * 5) * 2)
                tile_owner[tile] = name
    wanted = {tile_name(t): name for t, name in tile_owner.items()}
    out = []
    for shard in sorted((dataset_dir / THUMB_SUBDIR).rglob("*.tar")):
        for base, members in iter_tar_groups(shard):
            if f"{base}.png" in wanted:
                out.append((members["png"], wanted[f"{base}.png"]))
    for name in GEO_LANDFORMS:
        queries = sorted((dataset_dir / "image_queries" / name).glob("*.png"))
        out.extend((p.read_bytes(), name) for p in queries)
    return out


# ---------------------------------------------------------------- training set


@dataclass(frozen=True, slots=True)
class Sample:
    """One training image with the captions it may be paired with.

    `group` names what a template caption describes (a class): images of one class are all
    positives of each other's template captions. Descriptive captions are their own group.
    """

    image: bytes
    captions: tuple[str, ...]
    group: str | None


def training_samples(data_dir: Path, class_of_landform: dict[str, str]) -> list[Sample]:
    names, rows = read_landform(data_dir / "landform" / "dataset")
    samples = [Sample(png, tuple(prompts(names[label])), f"class:{names[label]}") for _, png, label in rows]
    for png, name in read_geo_landforms(data_dir / "geo" / "dataset"):
        cls = class_of_landform[name]
        samples.append(Sample(png, tuple(prompts(name) + prompts(cls)), f"class:{cls}"))
    for _, jpg, caps in read_paired(data_dir / "paired" / "dataset"):
        samples.append(Sample(jpg, tuple(caps[k] for k in PAIRED_CAPTION_KEYS), None))
    return samples


def images_to_tensor(images: Sequence[bytes], preprocess: Preprocess) -> torch.Tensor:
    """Decode and preprocess with the model's own transform, exactly as evaluation will."""
    return torch.stack([preprocess(Image.open(io.BytesIO(b)).convert("RGB")) for b in images])


def group_targets(keys: Sequence[str]) -> torch.Tensor:
    """Row-normalised positives: pairs whose caption describes the same thing are positives."""
    index = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    ids = torch.tensor([index[k] for k in keys])
    same = (ids[:, None] == ids[None, :]).float()
    return same / same.sum(dim=1, keepdim=True)


def clip_loss(
    img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE with soft targets (standard CLIP loss when all captions differ)."""
    logits = scale * img @ txt.T
    loss_i = -(targets * log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss_t = -(targets.T * log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return (loss_i + loss_t) / 2


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    samples: list[Sample],
    pixels: torch.Tensor,
    args: argparse.Namespace,
) -> None:
    captions = sorted({c for s in samples for c in s.captions})
    tokens = tokenizer(captions)
    token_row = {c: i for i, c in enumerate(captions)}
    gen = torch.Generator().manual_seed(args.seed)
    steps_per_epoch = len(samples) // args.batch_size
    total = steps_per_epoch * args.epochs
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr
    )
    model.train()
    clip = trainable_clip(model)
    step, start = 0, time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(len(samples), generator=gen)
        choice = torch.randint(0, 1 << 30, (len(samples),), generator=gen)
        running = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * args.batch_size : (b + 1) * args.batch_size].tolist()
            texts = [samples[i].captions[int(choice[i]) % len(samples[i].captions)] for i in idx]
            keys = [
                samples[i].group if samples[i].group is not None else f"text:{t}"
                for i, t in zip(idx, texts, strict=True)
            ]
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, args.lr, warmup=max(1, total // 20))
            img = normalize(clip.encode_image(pixels[idx].float()), dim=-1)
            txt = normalize(clip.encode_text(tokens[[token_row[t] for t in texts]]), dim=-1)
            loss = clip_loss(img, txt, clip.logit_scale.exp(), group_targets(keys))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():  # CLIP's clamp: temperature no lower than 1/100
                clip.logit_scale.clamp_(0, math.log(100))
            running += float(loss.detach())
            step += 1
        elapsed = time.perf_counter() - start
        mean_loss = running / steps_per_epoch
        print(f"epoch {epoch + 1}/{args.epochs} loss {mean_loss:.4f} ({elapsed:.0f} s)", flush=True)
    model.eval()


# ---------------------------------------------------------------- evaluation (protocol, numpy)


@torch.no_grad()
def embed_images(model: torch.nn.Module, pixels: torch.Tensor, batch: int = 256) -> np.ndarray:
    chunks = [pixels[i : i + batch] for i in range(0, len(pixels), batch)]
    clip = trainable_clip(model)
    return torch.cat([normalize(clip.encode_image(c), dim=-1) for c in chunks]).numpy()


@torch.no_grad()
def embed_texts(model: torch.nn.Module, tokenizer: Tokenizer, texts: list[str]) -> np.ndarray:
    chunks = [texts[i : i + 256] for i in range(0, len(texts), 256)]
    clip = trainable_clip(model)
    return torch.cat([normalize(clip.encode_text(tokenizer(c)), dim=-1) for c in chunks]).numpy()


def average_precision(ranked_relevant: np.ndarray, n_relevant: int) -> float:
    hits = np.cumsum(ranked_relevant)
    ranks = np.arange(1, len(ranked_relevant) + 1)
    return float((hits / ranks)[ranked_relevant.astype(bool)].sum() / n_relevant)


def landform_map(
    model: torch.nn.Module, tokenizer: Tokenizer, preprocess: Preprocess, dataset_dir: Path
) -> tuple[float, dict[str, float]]:
    """Task 2 protocol: 3 templates averaged per class, rank all images, per-class AP, mean."""
    names, rows = read_landform(dataset_dir)
    image_ids = np.array([r[0] for r in rows])
    labels = np.array([r[2] for r in rows])
    feats = embed_images(model, images_to_tensor([r[1] for r in rows], preprocess))
    per_class: dict[str, float] = {}
    for c, name in enumerate(names):
        if not (labels == c).any():
            continue
        query = embed_texts(model, tokenizer, prompts(name)).mean(axis=0)
        query /= np.linalg.norm(query)
        scores = feats @ query
        order = np.lexsort((image_ids, -scores))  # score descending, then image name ascending
        per_class[name] = average_precision(labels[order] == c, int((labels == c).sum()))
    return float(np.mean(list(per_class.values()))), per_class


def recall_at_1(sim: np.ndarray) -> float:
    """Share of queries (rows) whose own partner (the diagonal) scores strictly highest."""
    diag = np.diag(sim)
    better = (sim > diag[:, None]).sum(axis=1)
    return float((better == 0).mean())


def paired_r1(
    model: torch.nn.Module, tokenizer: Tokenizer, preprocess: Preprocess, dataset_dir: Path
) -> dict[str, tuple[float, float, int]]:
    """Task 1 protocol: I2T and T2I R@1 per caption key, with the number of pairs."""
    pairs = read_paired(dataset_dir)
    img = embed_images(model, images_to_tensor([p[1] for p in pairs], preprocess))
    out = {}
    for key in PAIRED_CAPTION_KEYS:
        txt = embed_texts(model, tokenizer, [p[2][key] for p in pairs])
        sim = img @ txt.T
        out[key] = (recall_at_1(sim), recall_at_1(sim.T), len(pairs))
    return out


def zero_shot_accuracy(
    model: torch.nn.Module, tokenizer: Tokenizer, preprocess: Preprocess, dataset_dir: Path
) -> float:
    names, rows = read_landform(dataset_dir)
    feats = embed_images(model, images_to_tensor([r[1] for r in rows], preprocess))
    queries = np.stack([embed_texts(model, tokenizer, prompts(n)).mean(axis=0) for n in names])
    pred = (feats @ queries.T).argmax(axis=1)
    return float((pred == np.array([r[2] for r in rows])).mean())


# ---------------------------------------------------------------- main


TINY_ASSET = Path("services/encoder/src/marsbench/encoder/assets/marsbench-tiny")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=TINY_ASSET)
    p.add_argument("--data-dir", type=Path, default=Path("data/marsbench-tiny"))
    p.add_argument("--seed", type=int, default=1, help="training data and init seed (not 0, the demo's)")
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--scale", choices=["small", "medium"], default="medium")
    p.add_argument("--train-sets", type=int, default=3, help="synthetic sets, seeds seed .. seed+N-1")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps runs bit-reproducible)")
    args = p.parse_args(argv)
    if args.seed <= DEMO_SEED < args.seed + args.train_sets:
        p.error(f"training seeds may not include {DEMO_SEED}, the held-out evaluation seed")
    return args


def write_config(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def save_weights(model: torch.nn.Module, folder: Path) -> None:
    """fp16 halves the file; open_clip's loader copies them into the fp32 model."""
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    t0 = time.perf_counter()
    train_dirs = [args.data_dir / f"train-seed{s}" for s in range(args.seed, args.seed + args.train_sets)]
    eval_dir = args.data_dir / f"eval-seed{DEMO_SEED}"
    for offset, folder in enumerate(train_dirs):
        synthesize(folder, scale=args.scale, seed=args.seed + offset)
    synthesize(eval_dir, scale="small", seed=DEMO_SEED, tasks=("landform", "paired"))
    print(f"synthesised data in {time.perf_counter() - t0:.0f} s", flush=True)

    staging = Path(tempfile.mkdtemp(prefix="marsbench-tiny-"))
    try:
        write_config(staging)  # no weights yet: open_clip builds a freshly initialised model
        model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{staging}")
        tokenizer = open_clip.get_tokenizer(f"local-dir:{staging}")
        n_params = sum(p.numel() for p in model.parameters())
        samples = [s for folder in train_dirs for s in training_samples(folder, GEO_LANDFORMS)]
        # fp16 storage halves memory; batches are cast back to fp32.
        pixels = images_to_tensor([s.image for s in samples], preprocess).to(torch.float16)
        print(f"{n_params:,} parameters; {len(samples)} training images", flush=True)
        t1 = time.perf_counter()
        train(model, tokenizer, samples, pixels, args)
        train_s = time.perf_counter() - t1
        save_weights(model, staging)

        # Score what is saved: reload the fp16 files through open_clip's own local-dir path.
        model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{staging}")
        model.eval()
        mean_ap, per_class = landform_map(model, tokenizer, preprocess, eval_dir / "landform" / "dataset")
        r1 = paired_r1(model, tokenizer, preprocess, eval_dir / "paired" / "dataset")
        accuracy = zero_shot_accuracy(model, tokenizer, preprocess, eval_dir / "landform" / "dataset")
        args.out.mkdir(parents=True, exist_ok=True)
        for name in ("open_clip_config.json", "open_clip_model.safetensors"):
            shutil.copyfile(staging / name, args.out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    size_mb = (args.out / "open_clip_model.safetensors").stat().st_size / 1e6
    print(f"training time {train_s:.0f} s; total {time.perf_counter() - t0:.0f} s")
    print(f"parameters {n_params:,}; weights {size_mb:.2f} MB (fp16)")
    print(f"landform T2I mAP (seed {DEMO_SEED}, small): {100 * mean_ap:.2f}  (chance ~14.3)")
    for name, ap in per_class.items():
        print(f"  AP {name:<18} {100 * ap:.2f}")
    print(f"landform zero-shot accuracy: {100 * accuracy:.2f}")
    for key, (i2t, t2i, n) in r1.items():
        tag = " (protocol default)" if key == EVAL_CAPTION_KEY else ""
        print(f"paired R@1 {key}{tag}: I2T {100 * i2t:.2f}  T2I {100 * t2i:.2f}  (chance {100 / n:.2f})")


if __name__ == "__main__":
    main()

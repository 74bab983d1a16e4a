"""The training loop: open_clip's `ClipLoss` and cosine schedule, AdamW, checkpoints, resume, DDP.

The base model is built by the encoder's own open_clip adapter (open_clip's
`create_model_and_transforms` and tokenizer, at the registry's pinned revision, with any
checkpoint the reference names), so the weights, preprocessing and tokenizer trained here are
exactly those the encoder serves. Images go through the model's evaluation transform: what the
benchmark will feed it.

Determinism: the batch order of step `s` is a function of (seed, s) alone, and the optimizer state
is in the checkpoint, so a run resumed from step k gives the same weights as an uninterrupted one
(on the same device, thread count and world size).

Distributed: under torchrun (WORLD_SIZE > 1) each rank takes a strided share of every global batch
(a DistributedSampler-style split), the model is wrapped in DistributedDataParallel, and ClipLoss
runs as open_clip's train script recommends it, `gather_with_grad=True, local_loss=True`: each rank
gathers every rank's features with their autograd edges and scores its own rows against all columns.
That is the global batch's loss and gradient, exactly: the rank losses are means over equal shares
of the global rows, so their mean (all-reduced for the log) is the global loss; the gathered
features' backward sums every rank's gradient into the rank that computed them, and DDP's average
over ranks then gives d(global loss)/d(weights). (`local_loss=False` with gather_with_grad is equal
too, at W times the logits; without gather_with_grad the other ranks' features are constants, so
the gradient misses terms or is scaled by 1/W.) tests/training/test_distributed.py checks the
losses of a 2-process run against a 1-process run of the same global batches. Only rank 0 writes
files.
"""

from __future__ import annotations

import io
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.distributed as dist
from open_clip.loss import ClipLoss
from open_clip_train.scheduler import cosine_lr
from PIL import Image
from torch.nn.functional import normalize

from marsbench.encoder.adapters import RuntimeOptions, load_model
from marsbench.encoder.adapters.open_clip import ClipTowers, OpenClipModel, Preprocess, Tokenizer
from marsbench.encoder.registry import ModelSpec
from marsbench.training.config import TrainConfig
from marsbench.training.data import Pair

LATEST = "epoch_latest.pt"  # open_clip's name for the most recent checkpoint
ProgressFn = Callable[["StepReport"], None]
_GATHER_DEPRECATED = r"torch\.distributed\.nn\.functional\.all_gather is deprecated"


@dataclass(frozen=True, slots=True)
class StepReport:
    step: int
    total: int
    loss: float
    lr: float
    rate: float  # steps per second since this process started training
    eta_s: float


@runtime_checkable
class TrainableClip(ClipTowers, Protocol):
    """An open_clip model as training uses it: its towers and its learned temperature."""

    logit_scale: torch.Tensor


def trainable_clip(module: torch.nn.Module) -> TrainableClip:
    if not isinstance(module, TrainableClip):
        raise TypeError(f"{type(module).__name__} is not an open_clip model with a logit_scale")
    return module


@dataclass(slots=True)
class Trainable:
    model: torch.nn.Module
    preprocess: Preprocess
    tokenizer: Tokenizer
    device: torch.device


@dataclass(slots=True)
class LoopResult:
    steps: int
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    resumed_from_step: int | None = None
    precision: str = "fp32"
    checkpoints_saved: int = 0  # by this process: rank 0 only


@dataclass(frozen=True, slots=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def pick_device(config: TrainConfig, ddp: Distributed) -> torch.device:
    wanted = config.device
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    if wanted == "cuda":
        return torch.device("cuda", ddp.local_rank)
    return torch.device("cpu")


def build(spec: ModelSpec, device: torch.device) -> Trainable:
    """The base model as the encoder loads it (open_clip factory, tokenizer, eval transform)."""
    loaded = load_model(spec, RuntimeOptions(device="cpu"))
    if not isinstance(loaded, OpenClipModel):
        raise ValueError(f"model {spec.name!r} (family {spec.family}) is not an open_clip model")
    model = loaded.module.to(device)
    model.requires_grad_(True)
    return Trainable(model, loaded.preprocess, loaded.tokenizer, device)


def images_tensor(images: Sequence[bytes], preprocess: Preprocess) -> torch.Tensor:
    return torch.stack([preprocess(Image.open(io.BytesIO(b)).convert("RGB")) for b in images])


def batch_indices(n: int, batch: int, step: int, seed: int) -> list[int]:
    """The samples of global step `step` (0-based): epochs are seeded permutations, dropping the
    last partial batch, so the order depends on (seed, step) only."""
    per_epoch = max(1, n // batch)
    epoch, offset = divmod(step, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return order[offset * batch : (offset + 1) * batch].tolist()


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """open_clip's split: no weight decay on gains, biases, norms, embeddings and logit_scale."""

    def exclude(name: str, p: torch.nn.Parameter) -> bool:
        return p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
        {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": weight_decay},
    ]


def autocast(device: torch.device) -> tuple[AbstractContextManager[object], str]:
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype), f"amp {str(dtype).removeprefix('torch.')}"
    return nullcontext(), "fp32"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomic, as open_clip's train script saves `epoch_latest.pt` (tmp file, then replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def train_loop(
    config: TrainConfig,
    trainable: Trainable,
    pairs: Sequence[Pair],
    *,
    name: str,
    ddp: Distributed,
    on_step: ProgressFn | None = None,
) -> LoopResult:
    """Train for `config.steps` steps (continuing from `<out>/checkpoints/epoch_latest.pt` when
    `config.resume`), writing that checkpoint every `checkpoint_every` steps and at the end."""
    if len(pairs) < config.batch_size:
        raise ValueError(f"{len(pairs)} training pairs, fewer than one batch of {config.batch_size}")
    if config.batch_size % ddp.world_size:
        raise ValueError(f"batch size {config.batch_size} does not split over {ddp.world_size} ranks")
    device = trainable.device
    model: torch.nn.Module = trainable.model
    model.train()
    optimizer = torch.optim.AdamW(
        param_groups(model, config.weight_decay), lr=config.lr, betas=(config.beta1, config.beta2),
        eps=config.eps,
    )  # fmt: skip
    schedule = cosine_lr(optimizer, config.lr, config.warmup_steps, config.steps)
    ckpt_path = config.out_dir / "checkpoints" / LATEST
    result = LoopResult(steps=0)
    if config.resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        result.steps = result.resumed_from_step = int(state["step"])
        result.losses, result.lrs = list(state.get("losses", [])), list(state.get("lrs", []))
    if ddp.enabled:
        ids = [device.index] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        # open_clip's ClipLoss gathers through torch.distributed.nn.all_gather, which torch now flags
        # as deprecated on every step; it is the autograd-aware gather the loss needs.
        warnings.filterwarnings("ignore", message=_GATHER_DEPRECATED, category=FutureWarning)
    # Equivalent to the 1-process loss over the global batch (the module docstring says why).
    loss_fn = ClipLoss(
        local_loss=ddp.enabled, gather_with_grad=ddp.enabled, cache_labels=True, rank=ddp.rank,
        world_size=ddp.world_size,
    )  # fmt: skip
    amp, result.precision = autocast(device)
    tokens = trainable.tokenizer([p.caption for p in pairs])
    per_epoch = max(1, len(pairs) // config.batch_size)
    started, first = time.perf_counter(), result.steps

    def checkpoint(step: int) -> None:
        if ddp.main:
            payload = {
                "epoch": step // per_epoch, "step": step, "name": name,
                "state_dict": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                "losses": result.losses, "lrs": result.lrs, "hyperparameters": config.hyperparameters(),
            }  # fmt: skip
            save_checkpoint(ckpt_path, payload)
            result.checkpoints_saved += 1

    while result.steps < config.steps:
        step = result.steps
        lr = schedule(step)
        idx = batch_indices(len(pairs), config.batch_size, step, config.seed)[ddp.rank :: ddp.world_size]
        images = images_tensor([pairs[i].image for i in idx], trainable.preprocess).to(device)
        texts = tokens[idx].to(device)
        with amp:
            image_features, text_features, scale = _forward(model, images, texts)
            loss = loss_fn(image_features, text_features, scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # open_clip's clamp: temperature no lower than 1/100
            trainable_clip(unwrap(model)).logit_scale.clamp_(0, math.log(100))
        value = float(loss.detach())
        if ddp.enabled:
            mean = torch.tensor([value], device=device)
            dist.all_reduce(mean)
            value = float(mean) / ddp.world_size
        result.losses.append(value)
        result.lrs.append(float(lr))
        result.steps = step + 1
        if on_step is not None and ddp.main:
            elapsed = time.perf_counter() - started
            rate = (result.steps - first) / elapsed if elapsed > 0 else 0.0
            eta = (config.steps - result.steps) / rate if rate > 0 else 0.0
            on_step(StepReport(result.steps, config.steps, value, float(lr), rate, eta))
        if result.steps % config.checkpoint_every == 0 or result.steps == config.steps:
            checkpoint(result.steps)
    if result.resumed_from_step is not None and result.resumed_from_step >= config.steps:
        checkpoint(result.steps)  # nothing left to do: keep the checkpoint as it is
    unwrap(model).eval()
    return result


def _forward(
    model: torch.nn.Module, images: torch.Tensor, texts: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Through the (possibly DDP-wrapped) module's forward, so gradients are synchronised."""
    out = model(images, texts)
    if isinstance(out, dict):
        return out["image_features"], out["text_features"], out["logit_scale"]
    return out[0], out[1], out[2]


# ---------------------------------------------------------------- held-out metrics, in process


@torch.no_grad()
def embed(trainable: Trainable, pairs: Sequence[Pair], batch: int = 128) -> tuple[np.ndarray, np.ndarray]:
    model = trainable_clip(unwrap(trainable.model).eval())
    img, txt = [], []
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        pixels = images_tensor([p.image for p in chunk], trainable.preprocess).to(trainable.device)
        img.append(normalize(model.encode_image(pixels).float(), dim=-1).cpu())
        tokens = trainable.tokenizer([p.caption for p in chunk]).to(trainable.device)
        txt.append(normalize(model.encode_text(tokens).float(), dim=-1).cpu())
    return torch.cat(img).numpy(), torch.cat(txt).numpy()


def retrieval_metrics(image: np.ndarray, text: np.ndarray) -> dict[str, float]:
    """R@1, R@10 and MRR both ways over the full gallery, partner ranks counted pessimistically
    against ties (a quick check; the benchmark's evaluator is the reference for numbers)."""
    sim = image @ text.T
    out: dict[str, float] = {}
    for direction, matrix in (("i2t", sim), ("t2i", sim.T)):
        ranks = (matrix >= np.diag(matrix)[:, None]).sum(axis=1)  # 1 = partner best
        out[f"{direction}_r1"] = float((ranks <= 1).mean())
        out[f"{direction}_r10"] = float((ranks <= 10).mean())
        out[f"{direction}_mrr"] = float((1.0 / ranks).mean())
    return out

"""One fine-tuning run end to end: split, train, save, register, record.

Writes into `out_dir`:

- `heldout/`: the held-out samples as paired WebDataset shards (the benchmark evaluates these);
- `checkpoints/epoch_latest.pt`: the resumable training checkpoint, open_clip's training format
  (`epoch`, `step`, `name`, `state_dict`, `optimizer`, plus losses and hyperparameters);
- `<name>.pt`: the fine-tuned weights (`epoch`, `step`, `name`, `state_dict`), loadable as
  `<base>@<file>` and by open_clip's `load_checkpoint`;
- `registry.toml`: a registry entry `[models."<name>"]` (MARSBENCH_ENCODER_REGISTRY);
- `training.json`: the `TrainingRecord`; `loss.png`: the loss curve.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from marsbench.encoder.registry import ModelSpec, registered_specs, resolve_model, weights_sha256
from marsbench.files import file_sha256, write_text_atomic
from marsbench.training.config import CheckpointInfo, DataInfo, SplitInfo, TrainConfig, TrainingRecord
from marsbench.training.data import (
    SPLIT_RULE,
    keys_sha256,
    read_pairs,
    shard_fingerprint,
    write_paired_shards,
)
from marsbench.training.loop import (
    LATEST,
    Distributed,
    ProgressFn,
    build,
    embed,
    pick_device,
    retrieval_metrics,
    save_checkpoint,
    train_loop,
    unwrap,
)

HELDOUT_DIR = "heldout"
RECORD_FILE = "training.json"
REGISTRY_FILE = "registry.toml"
CURVE_FILE = "loss.png"
Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class TrainOutcome:
    record: TrainingRecord
    record_path: Path
    registry_path: Path
    checkpoint: Path
    heldout_dir: Path
    spec: ModelSpec  # the base model's
    rank: int = 0
    written: tuple[Path, ...] = ()  # the files and folders this process wrote (none on ranks > 0)


def outcome_from_record(record_path: Path, registry: Sequence[Path] = ()) -> TrainOutcome:
    """The outcome of a run another process finished (torchrun's workers), from its training.json;
    `registry`: the extra registry files the run resolved its base model with."""
    record = TrainingRecord.model_validate_json(record_path.read_text())
    spec = resolve_model(record.base_model, registered_specs(list(registry)))
    return TrainOutcome(
        record, record_path, Path(record.registry_file), Path(record.checkpoint.path),
        Path(record.data.split.heldout_dir), spec,
    )  # fmt: skip


def run_name(base: str, parts: dict[str, object]) -> str:
    """`<base>-ft-<8 hex>`: the hash covers base weights, data, split and hyperparameters."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", base.split("@", 1)[0]).strip("-") or "model"
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return f"{stem}-ft-{digest[:8]}"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(str(value))  # a TOML basic string is a JSON string for these values


def registry_entry(name: str, base: ModelSpec, checkpoint: Path, record: Path) -> str:
    """A registry file holding the fine-tuned model: the base's source plus the new checkpoint."""
    fields: dict[str, object] = {"family": base.family, "source": base.source}
    for key in ("pretrained", "revision", "dimension", "image_size", "precision"):
        if getattr(base, key) is not None:
            fields[key] = getattr(base, key)
    if base.force_quick_gelu:
        fields["force_quick_gelu"] = True
    fields["default_batch_size"] = base.default_batch_size
    fields["checkpoint"] = str(checkpoint)
    fields["description"] = f"{base.name} fine-tuned by `marsbench train` (training record {record})"
    lines = [f"[models.{json.dumps(name)}]", *(f"{k} = {_toml_value(v)}" for k, v in fields.items())]
    return "# Written by `marsbench train`; add with MARSBENCH_ENCODER_REGISTRY.\n" + "\n".join(lines) + "\n"


def plot_losses(losses: list[float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    steps = list(range(1, len(losses) + 1))
    ax.plot(steps, losses, lw=0.8, alpha=0.5, label="loss per step")
    window = max(1, len(losses) // 20)
    if window > 1:
        smooth = [sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1])
                  for i in range(len(losses))]  # fmt: skip
        ax.plot(steps, smooth, lw=1.6, label=f"mean of {window}")
    ax.set_xlabel("step")
    ax.set_ylabel("CLIP loss")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _software() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for package in ("marsbench", "torch", "open_clip_torch", "numpy"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    return out


@contextmanager
def process_group(ddp: Distributed, device: torch.device) -> Iterator[None]:
    """torch.distributed for this run under torchrun (nccl on GPU, gloo on CPU), torn down after it;
    a group the caller set up already is left to the caller."""
    if not ddp.enabled or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def train(config: TrainConfig, *, on_step: ProgressFn | None = None, log: Log = print) -> TrainOutcome:
    """Run (or resume) the fine-tuning run `config` describes; returns what it wrote. Under torchrun
    every rank calls this; rank 0 alone logs and writes files."""
    ddp = Distributed.from_env()
    device = pick_device(config, ddp)
    with process_group(ddp, device):
        return _train(config, ddp, device, on_step=on_step, log=log if ddp.main else _quiet)


def _quiet(line: str) -> None:
    pass


def _train(
    config: TrainConfig, ddp: Distributed, device: torch.device, *, on_step: ProgressFn | None, log: Log
) -> TrainOutcome:
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    spec = resolve_model(config.model, registered_specs(config.registry))
    if spec.family != "open_clip":
        raise ValueError(f"model {config.model!r} is family {spec.family}; training supports open_clip")
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)

    roots = config.dataset_roots or None
    data = read_pairs(config.data_dir, config.caption_key, config.eval_split, roots=roots)
    if not data.heldout and config.eval_split > 0:
        raise ValueError(
            f"no sample of {config.data_dir} fell into the held-out split of {config.eval_split}"
        )
    heldout_dir = out / HELDOUT_DIR
    written: list[Path] = []
    if ddp.main:
        written.append(write_paired_shards(heldout_dir, data.heldout, config.caption_key))
    if ddp.enabled:
        dist.barrier()
    split = SplitInfo(
        rule=SPLIT_RULE, fraction=config.eval_split, train_pairs=len(data.train),
        heldout_pairs=len(data.heldout), heldout_dir=str(heldout_dir),
        heldout_fingerprint=shard_fingerprint(heldout_dir, config.caption_key),
        train_keys_sha256=keys_sha256(data.train),
    )  # fmt: skip
    info = DataInfo(
        path=str(config.data_dir), caption_key=config.caption_key, fingerprint=data.fingerprint,
        skipped=data.skipped, split=split,
    )  # fmt: skip
    base_sha = weights_sha256(spec)
    name = run_name(
        spec.name,
        {"base": spec.name, "source": spec.source, "pretrained": spec.pretrained, "revision": spec.revision,
         "weights": base_sha, "data": data.fingerprint, "train_keys": split.train_keys_sha256,
         "hyperparameters": config.hyperparameters(), "world_size": ddp.world_size},
    )  # fmt: skip
    log(f"{name}: {len(data.train)} training pairs, {len(data.heldout)} held out -> {heldout_dir}")

    trainable = build(spec, device)
    before = retrieval_metrics(*embed(trainable, data.heldout)) if data.heldout and ddp.main else {}
    unwrap(trainable.model).train()
    result = train_loop(config, trainable, data.train, name=name, ddp=ddp, on_step=on_step)
    if result.checkpoints_saved:
        written.append(out / "checkpoints" / LATEST)
    after = retrieval_metrics(*embed(trainable, data.heldout)) if data.heldout and ddp.main else {}

    weights = out / f"{name}.pt"
    record_path = out / RECORD_FILE
    registry_path = out / REGISTRY_FILE
    record: TrainingRecord | None = None
    if ddp.main:
        state = unwrap(trainable.model).state_dict()
        per_epoch = max(1, len(data.train) // config.batch_size)
        payload = {
            "epoch": result.steps // per_epoch,
            "step": result.steps,
            "name": name,
            "state_dict": state,
        }
        save_checkpoint(weights, payload)
        plot_losses(
            result.losses, out / CURVE_FILE, f"{name}: {len(data.train)} pairs, batch {config.batch_size}"
        )
        write_text_atomic(registry_path, registry_entry(name, spec, weights, record_path))
        written += [weights, out / CURVE_FILE, registry_path]
        record = TrainingRecord(
            name=name, base_model=config.model, base_source=spec.source, base_weights_sha256=base_sha,
            data=info, hyperparameters=config.hyperparameters(), steps=result.steps,
            resumed_from_step=result.resumed_from_step, world_size=ddp.world_size, device=str(device),
            precision=result.precision,
            checkpoint=CheckpointInfo(
                path=str(weights), sha256=file_sha256(weights), bytes=weights.stat().st_size
            ),
            resume_checkpoint=str(out / "checkpoints" / LATEST), registry_file=str(registry_path),
            losses=result.losses, lrs=result.lrs, heldout_before=before, heldout_after=after,
            loss_curve=str(out / CURVE_FILE), started_at=started_at,
            finished_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            duration_s=round(time.perf_counter() - started, 3), software=_software(),
        )  # fmt: skip
        write_text_atomic(record_path, record.model_dump_json(indent=2))
        written.append(record_path)
    if ddp.enabled:
        dist.barrier()
    if record is None:  # another rank: rank 0 wrote it
        record = TrainingRecord.model_validate_json(record_path.read_text())
    return TrainOutcome(
        record, record_path, registry_path, weights, heldout_dir, spec, rank=ddp.rank, written=tuple(written)
    )

"""`marsbench train`: fine-tune an open_clip model on paired shards, register it, and optionally
benchmark base and fine-tuned model on the held-out split through the services (paired task).

The training package comes with the encoder extra (`marsbench.cli.extras`): it is imported when the
command runs, not when the parser is built, so the other commands work without it."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from marsbench.cli.errors import CommandError
from marsbench.cli.extras import encoder_extra, encoder_settings
from marsbench.files import file_sha256, write_text_atomic
from marsbench.schemas.provenance import TrainingProvenance
from marsbench.schemas.runs import RunRecord
from marsbench.schemas.training import TrainOptions

if TYPE_CHECKING:
    from marsbench.training.config import TrainConfig
    from marsbench.training.loop import StepReport
    from marsbench.training.runner import TrainOutcome

GAIN_KEYS = ("i2t_r1", "i2t_r10", "i2t_mrr", "t2i_r1", "t2i_r10", "t2i_mrr")
_COMMAND = "`marsbench train`"


def add_train_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    train = commands.add_parser(
        "train",
        help="Fine-tune an open_clip model on paired shards; register it; benchmark the held-out split.",
        description="Contrastive fine-tuning (open_clip's ClipLoss, AdamW, cosine schedule) on a paired "
        "WebDataset folder. Holds out a share of the samples by a hash of their key, written to "
        "<out>/heldout as paired shards; writes <out>/<name>.pt, <out>/registry.toml, <out>/training.json "
        "and <out>/loss.png; resumes from <out>/checkpoints/epoch_latest.pt. Under torchrun it trains with "
        "DDP. --benchmark evaluates the base and the fine-tuned model on the held-out split "
        "(docs/training.md).",
    )
    train.add_argument("--data", required=True, type=Path, help="Paired dataset folder (WebDataset shards).")
    train.add_argument("--model", default="marsbench-tiny", help="Base model reference (open_clip family).")
    train.add_argument("--out", required=True, type=Path, help="Folder for everything the run writes.")
    # Unset, these take the training config's defaults (TrainConfig, read when the command runs).
    train.add_argument("--steps", type=int, help="Optimiser steps in all.")
    train.add_argument("--batch-size", type=int, help="Global batch.")
    train.add_argument("--lr", type=float, help="Learning rate.")
    train.add_argument("--warmup-steps", type=int, help="Learning-rate warm-up steps.")
    train.add_argument("--eval-split", type=float, help="Share of samples held out.")
    train.add_argument("--caption-key", help="The caption field trained on.")
    train.add_argument("--seed", type=int, help="Init of the global RNG and the batch order.")
    train.add_argument("--checkpoint-every", type=int, help="Steps between resumable checkpoints.")
    train.add_argument("--threads", type=int, help="torch CPU threads per process (1: bit-reproducible).")
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), help="Default auto.")
    train.add_argument("--registry", action="append", type=Path, default=[], help="Extra registry file.")
    train.add_argument("--no-resume", action="store_true", help="Start over even if a checkpoint exists.")
    train.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="Training processes: N > 1 runs torchrun (DDP, gloo on CPU, nccl on GPU) with the global "
        "batch split across them.",
    )
    train.add_argument(
        "--benchmark",
        action="store_true",
        help="Then evaluate base and fine-tuned model on the held-out split (paired task); print the gain.",
    )
    train.add_argument("--indexer-url", default=os.environ.get("MARSBENCH_INDEXER_URL"))
    train.add_argument("--evaluator-url", default=os.environ.get("MARSBENCH_EVALUATOR_URL"))
    train.set_defaults(train_handler=cmd_train)


def train_options(args: argparse.Namespace) -> TrainOptions:
    """The flags as the trainer's options (the same model `POST /v1/train` takes); unset: default."""
    return TrainOptions(
        model=args.model, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        warmup_steps=args.warmup_steps, eval_split=args.eval_split, caption_key=args.caption_key,
        seed=args.seed, checkpoint_every=args.checkpoint_every, threads=args.threads, device=args.device,
        resume=False if args.no_resume else None, nproc=args.nproc,
    )  # fmt: skip


def cmd_train(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    with encoder_extra(_COMMAND):
        from marsbench.training.config import training_config

    env_registry = [Path(p) for p in os.environ.get("MARSBENCH_ENCODER_REGISTRY", "").split(",") if p]
    try:
        options = train_options(args)
        config = training_config(
            options, data_dir=args.data, out_dir=args.out, registry=[*env_registry, *args.registry]
        )
    except ValidationError as exc:
        raise CommandError(f"invalid training options: {exc}") from None
    if options.nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise CommandError(
            "--nproc starts torchrun itself: run `marsbench train --nproc N`, not under torchrun"
        )
    if options.nproc > 1 and config.batch_size % options.nproc:
        raise CommandError(f"--batch-size {config.batch_size} does not split over --nproc {options.nproc}")
    outcome = train_here(config) if options.nproc == 1 else train_in_workers(config, options.nproc)
    if outcome is None:  # a rank other than 0 under torchrun: rank 0 reports
        return 0
    record = outcome.record
    print(f"model {record.name}: {record.steps} steps, final loss {record.losses[-1]:.4f}")
    print(f"weights {outcome.checkpoint} (sha256 {record.checkpoint.sha256[:16]}...)")
    print(f"registry entry {outcome.registry_path}\ntraining record {outcome.record_path}")
    if args.benchmark:
        return benchmark_heldout(args, outcome)
    return 0


def train_here(config: TrainConfig) -> TrainOutcome | None:
    """Train in this process (or as one of torchrun's ranks, when it started this command)."""
    from marsbench.training.events import format_step
    from marsbench.training.runner import train

    def progress(report: StepReport) -> None:
        if report.step % config.log_every == 0 or report.step == config.steps:
            print(format_step(report), flush=True)

    try:
        outcome = train(config, on_step=progress, log=lambda line: print(line, flush=True))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return outcome if int(os.environ.get("RANK", "0")) == 0 else None


def train_in_workers(config: TrainConfig, nproc: int) -> TrainOutcome:
    """Train in `nproc` processes under torchrun (marsbench.training.launch), printing their progress."""
    import tempfile

    from marsbench.training.events import LogEvent, RankEvent, StepEvent, WorkerEvent, format_step
    from marsbench.training.launch import TrainingFailed, run_training
    from marsbench.training.runner import outcome_from_record

    def on_event(event: WorkerEvent) -> None:
        if isinstance(event, StepEvent) and (event.step % config.log_every == 0 or event.step == event.total):
            print(format_step(event), flush=True)
        elif isinstance(event, LogEvent):
            print(event.message, flush=True)
        elif isinstance(event, RankEvent):
            print(f"rank {event.rank}/{event.world_size}: {event.steps} steps", flush=True)

    with tempfile.TemporaryDirectory(prefix="marsbench-train-") as workdir:
        try:
            record, _ = run_training(
                config, nproc=nproc, workdir=Path(workdir), on_event=on_event,
                on_line=lambda line: print(line, file=sys.stderr, flush=True),
            )  # fmt: skip
        except TrainingFailed as exc:
            raise CommandError(str(exc)) from None
    return outcome_from_record(record, config.registry)


@contextmanager
def _stack(args: argparse.Namespace, registry: Path) -> Iterator[tuple[str, str, str]]:
    if args.indexer_url and args.evaluator_url:
        yield args.indexer_url, args.evaluator_url, ""
        return
    from marsbench.cli.stack import LocalStack

    settings = encoder_settings(f"{_COMMAND} --benchmark without --indexer-url and --evaluator-url")
    settings = settings.model_copy(update={"registry": [*settings.registry, str(registry)]})
    with LocalStack(data_dir=args.out / "stack", encoder_settings=settings) as urls:
        yield urls.indexer, urls.evaluator, urls.encoder


def training_link(outcome: TrainOutcome) -> TrainingProvenance:
    record = outcome.record
    return TrainingProvenance(
        record=str(outcome.record_path), record_sha256=file_sha256(outcome.record_path), name=record.name,
        base_model=record.base_model, data_fingerprint=record.data.fingerprint,
        heldout_fingerprint=record.data.split.heldout_fingerprint, steps=record.steps,
        hyperparameters=record.hyperparameters, checkpoint_sha256=record.checkpoint.sha256,
    )  # fmt: skip


def link_training(record: RunRecord, path: Path, link: TrainingProvenance) -> RunRecord:
    """The run record of the fine-tuned model, with `provenance.training` set, written back."""
    if record.provenance is None:
        return record
    linked = record.model_copy(update={"provenance": record.provenance.model_copy(update={"training": link})})
    write_text_atomic(path, linked.model_dump_json(indent=2))
    return linked


def benchmark_heldout(args: argparse.Namespace, outcome: TrainOutcome) -> int:
    """Paired retrieval on the held-out split: base model, then fine-tuned model; prints the gain."""
    from marsbench.cli.run import run_task
    from marsbench.cli.stack import StackUrls
    from marsbench.cli.tables import render_table
    from marsbench.schemas.jobs import TaskName

    record = outcome.record
    runs_dir = args.out / "runs"
    fine_tuned = record.name
    with _stack(args, outcome.registry_path) as (indexer, evaluator, encoder):
        if args.indexer_url:  # running services may not know the registry entry: name the file
            fine_tuned = f"{record.base_model}@{outcome.checkpoint}"
        urls = StackUrls(encoder=encoder, indexer=indexer, evaluator=evaluator)
        results: dict[str, RunRecord] = {}
        for label, model in (("base", record.base_model), ("fine-tuned", fine_tuned)):
            run, path = run_task(
                urls, task=TaskName.PAIRED, dataset_dir=outcome.heldout_dir, model=model, out_dir=runs_dir,
                caption_key=record.data.caption_key,
            )  # fmt: skip
            if label == "fine-tuned":
                run = link_training(run, path, training_link(outcome))
            results[label] = run
            print(f"{label} {model}: run record {path}")
    before, after = results["base"].metrics, results["fine-tuned"].metrics
    rows = [
        [
            key,
            f"{100 * before[key]:.2f}",
            f"{100 * after[key]:.2f}",
            f"{100 * (after[key] - before[key]):+.2f}",
        ]
        for key in GAIN_KEYS
    ]
    pairs = results["base"].counts.get("pairs")
    print(f"held-out split: {pairs} pairs never trained on ({outcome.heldout_dir})")
    print(render_table(["metric", "base", "fine-tuned", "gain"], rows))
    return 0

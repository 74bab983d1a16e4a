"""The `marsbench` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from marsbench.cli.errors import CommandError
from marsbench.cli.tables import models_table
from marsbench.client import MarsbenchError
from marsbench.datasets.errors import DatasetError
from marsbench.observability import configure_logging
from marsbench.schemas.jobs import TaskName
from marsbench.schemas.runs import QueryMode
from marsbench.security import StartupRefused
from marsbench.tasks.geo import DEFAULT_MIX_RATIO, DEFAULT_RADIUS_DEG, DEFAULT_TEMPERATURE, DEFAULT_TOP_K

if TYPE_CHECKING:
    from marsbench.cli.progress import JobProgress
    from marsbench.cli.stack import StackUrls


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("marsbench")
    except PackageNotFoundError:  # run from a checkout that is not installed
        from marsbench.version import __version__

        return __version__


def _data_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("MARSBENCH_DATA_DIR", ".marsbench"))


def _add_service_urls(parser: argparse.ArgumentParser) -> None:
    """Running services to use instead of starting them here."""
    parser.add_argument("--indexer-url", default=os.environ.get("MARSBENCH_INDEXER_URL"))
    parser.add_argument("--evaluator-url", default=os.environ.get("MARSBENCH_EVALUATOR_URL"))
    parser.add_argument(
        "--encoder-url",
        default=os.environ.get("MARSBENCH_ENCODER_URL"),
        help="With running services: the encoder (comma-separated replicas), for model cards.",
    )


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", help="Embedded store, job state and runs (default: $MARSBENCH_DATA_DIR or .marsbench)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marsbench", description="The Mars retrieval benchmark as services."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Log service activity.")
    parser.add_argument("--version", action="version", version=f"marsbench {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="Synthetic data + marsbench-tiny through the whole pipeline.")
    _add_data_dir(demo)
    demo.add_argument("--out", help="Where run records go (default: <data-dir>/demo-runs)")

    serve = commands.add_parser(
        "serve",
        help="Run encoder, indexer and evaluator in one process, and the trainer with the encoder extra.",
    )
    _add_data_dir(serve)
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="Address to listen on. Beyond loopback, MARSBENCH_API_KEY and MARSBENCH_DATASET_ROOTS are "
        "required (docs/reliability.md).",
    )
    serve.add_argument("--encoder-port", type=int, default=8001)
    serve.add_argument("--indexer-port", type=int, default=8002)
    serve.add_argument("--evaluator-port", type=int, default=8003)
    serve.add_argument(
        "--trainer-port",
        type=int,
        default=8004,
        help="The trainer (POST /v1/train), served where the training package is installed; it writes "
        "under $MARSBENCH_TRAIN_DIR (default: <data-dir>/training), which the encoder serves checkpoints "
        "from.",
    )

    data = commands.add_parser("data", help="Dataset utilities.").add_subparsers(
        dest="data_command", required=True
    )
    synth = data.add_parser(
        "synth", help="Write synthetic data for all three tasks in the published layouts."
    )
    synth.add_argument("--out", required=True, type=Path)
    synth.add_argument("--scale", choices=["small", "medium"], default="small")
    synth.add_argument("--seed", type=int, default=0)
    from marsbench.cli.data_download import add_download_parser  # `data download` (issue 18)

    add_download_parser(data)
    from marsbench.cli.data_tiles import add_build_tiles_parser  # `data build-tiles` (issue 18)

    add_build_tiles_parser(data)

    run = commands.add_parser("run", help="Index (or reuse) and evaluate one task.")
    run.add_argument("task", choices=[task.value for task in TaskName])
    run.add_argument("--dataset-dir", required=True, type=Path, help="The task's published dataset/ folder.")
    run.add_argument("--model", required=True, help="Registered name or open_clip:<arch>[:<pretrained>].")
    run.add_argument("--checkpoint", type=Path, help="Local weights file in open_clip's format.")
    run.add_argument("--out", required=True, type=Path, help="Folder for the JSON run record.")
    run.add_argument("--max-k", type=int, help="Landform: ranking cut-off (default: rank everything).")
    run.add_argument(
        "--caption-key",
        default="refined_caption",
        help="Paired: ori_caption, refined_caption, qwen3_fused_caption.",
    )
    run.add_argument("--top-lists", action="store_true", help="Paired: also keep each query's top-10 list.")
    run.add_argument("--landform", default="all", help="Geo: a landform with a ground-truth CSV, or 'all'.")
    run.add_argument(
        "--query-mode", default="all", choices=[*(m.value for m in QueryMode), "all"], help="Geo query mode."
    )
    run.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="Geo: tiles retrieved per query.")
    run.add_argument(
        "--radius-deg", type=float, default=DEFAULT_RADIUS_DEG, help="Geo: hit radius in degrees."
    )
    run.add_argument(
        "--mix-ratio", type=float, default=DEFAULT_MIX_RATIO, help="Geo hybrid: weight of the image part."
    )
    run.add_argument(
        "--temperature", type=float, default=DEFAULT_TEMPERATURE, help="Geo hybrid: softmax temperature."
    )
    _add_service_urls(run)
    _add_data_dir(run)

    bench = commands.add_parser(
        "benchmark",
        help="Run a grid of tasks x models x query modes from a config file; resumable; leaderboard.",
        description="Runs every (task, model, caption key / landform, query mode) the YAML config asks "
        "for, skipping runs whose records are already in the out folder, and ends with a leaderboard "
        "per task (printed, and written as leaderboard.md and leaderboard-<task>.csv). Exit status 1 "
        "when any run failed; rerun to retry just those. Examples: configs/demo.yaml, configs/paper.yaml.",
    )
    bench.add_argument("--config", required=True, type=Path, help="The grid's YAML config file.")
    bench.add_argument("--out", type=Path, help="Records and leaderboard (default: the config's 'out').")
    bench.add_argument("--dry-run", action="store_true", help="Print the plan and the runs left; run none.")
    _add_service_urls(bench)
    _add_data_dir(bench)

    report = commands.add_parser(
        "report",
        help="A leaderboard report (Markdown, CSV, static HTML with figures) from run records.",
        description="Finds the run records under --results (recursively: the out folders of run, "
        "benchmark and demo, or the evaluator's runs dir; the newest record of each run counts) and "
        "writes report.md, leaderboard-<task>.csv and index.html with its figures/ into --out. The page "
        "works offline. Record files that cannot be read are named on stderr and skipped.",
    )
    report.add_argument("--results", required=True, type=Path, help="Folder searched for run records.")
    report.add_argument("--out", required=True, type=Path, help="Folder for the report.")

    models = commands.add_parser(
        "models",
        help="Every registered model: modalities, source, pinned revision, status.",
        description="Lists the models a running encoder serves (--encoder-url or MARSBENCH_ENCODER_URL), "
        "or, without one, the registry this installation would serve (built-ins plus the files in "
        "MARSBENCH_ENCODER_REGISTRY or --registry).",
    )
    models.add_argument("--encoder-url", dest="url", default=os.environ.get("MARSBENCH_ENCODER_URL"))
    models.add_argument("--registry", action="append", default=[], help="Extra registry file (repeatable).")
    models.add_argument("--json", action="store_true", help="One JSON object per line instead of a table.")

    jobs = commands.add_parser(
        "jobs",
        help="Indexing jobs: list them, follow one with a progress bar, resume or cancel one.",
        description="`marsbench jobs` lists the indexer's jobs (state, progress, rate, ETA, skips, tries, "
        "error); `marsbench jobs watch ID` follows one with a progress bar until it ends; `marsbench jobs "
        "resume ID` continues a failed or cancelled job where it stopped and follows it; `marsbench jobs "
        "cancel ID` stops a queued or running job at its next batch boundary, keeping what it wrote, and "
        "waits until it has stopped (--no-wait: return at once).",
    )
    jobs.add_argument("action", nargs="?", choices=("list", "watch", "resume", "cancel"), default="list")
    jobs.add_argument("job_id", nargs="?", help="The job, for watch, resume and cancel.")
    jobs.add_argument("--no-wait", action="store_true", help="resume, cancel: do not follow the job.")
    jobs.add_argument("--json", action="store_true", help="list: one JSON object per line.")
    collections = commands.add_parser(
        "collections",
        help="Collections in the store (JSON lines); delete, export or import one.",
        description="`marsbench collections` lists the store's collections (JSON lines); `marsbench "
        "collections delete NAME` drops one (asks first on a terminal; --yes does not); `marsbench "
        "collections export NAME` writes a snapshot of it into the indexer's <data dir>/snapshots/ and "
        "prints its name, path, size and sha256; `marsbench collections import FILE` creates the "
        "collection again from such a snapshot (FILE: its name, or a path whose file name is taken: it "
        "must lie in the indexer's snapshots folder). Each is refused while a job writes the collection.",
    )
    collections.add_argument(
        "action", nargs="?", choices=("list", "delete", "export", "import"), default="list"
    )
    collections.add_argument(
        "target", nargs="?", help="The collection (delete, export) or the snapshot (import)."
    )
    collections.add_argument(
        "--as", dest="collection", help="import: the collection to create (default: the one exported)."
    )
    collections.add_argument("--yes", action="store_true", help="delete: do not ask.")
    for listing in (jobs, collections):
        listing.add_argument(
            "--indexer-url",
            dest="url",
            default=os.environ.get("MARSBENCH_INDEXER_URL", "http://127.0.0.1:8002"),
        )
    from marsbench.cli.train import add_train_parser  # `train` (issue 19): handler in args.train_handler

    add_train_parser(commands)
    return parser


def _cmd_demo(args: argparse.Namespace) -> int:
    from marsbench.cli.demo import run_demo

    data_dir = _data_dir(args.data_dir)
    return run_demo(data_dir=data_dir, out_dir=Path(args.out) if args.out else data_dir / "demo-runs")


def _cmd_serve(args: argparse.Namespace) -> int:
    from marsbench.cli.stack import LocalStack, available_trainer

    stack = LocalStack(
        data_dir=_data_dir(args.data_dir),
        host=args.host,
        ports=(args.encoder_port, args.indexer_port, args.evaluator_port),
        qdrant_url=os.environ.get("QDRANT_URL"),
        trainer=available_trainer(),  # None (and a log line saying why) without the training package
        trainer_port=args.trainer_port,
        log_level="info" if args.verbose else "warning",
    )
    urls = stack.start_in_thread()
    trainer = f"trainer   {urls.trainer}\n" if urls.trainer else ""
    print(
        f"encoder   {urls.encoder}\nindexer   {urls.indexer}\nevaluator {urls.evaluator}\n{trainer}"
        f"search    {urls.evaluator}/ui/",
        flush=True,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    # Woken every second: a signal that lands on another thread runs its handler only once the
    # main thread is back in Python, and an untimed wait on a lock may never return for it.
    while not stop.wait(1.0):
        pass
    stack.stop()
    this = threading.current_thread()
    busy = [t.name for t in threading.enumerate() if t is not this and t.is_alive()]
    if busy:
        # Work abandoned by the bounded shutdown (a forward pass, a job's thread, its pool): the
        # interpreter would join the pools' threads at exit, for as long as the batch takes. The
        # servers are down, the store closed and the job files written by now (issue 17, item 9).
        logging.getLogger(__name__).warning("exiting without waiting for %s", ", ".join(busy))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    if args.data_command == "download":
        return args.data_handler(args)
    if args.data_command == "build-tiles":
        return args.data_handler(args)
    from marsbench.datasets.synth import synthesize

    summary = synthesize(args.out, scale=args.scale, seed=args.seed)
    print(json.dumps(summary.to_dict(), indent=2))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from marsbench.cli.progress import JobProgress
    from marsbench.cli.run import ServiceUrls, model_reference, services

    model = model_reference(args.model, args.checkpoint)
    urls = ServiceUrls(indexer=args.indexer_url, evaluator=args.evaluator_url, encoder=args.encoder_url)
    with services(urls, data_dir=_data_dir(args.data_dir)) as running:
        task = TaskName(args.task)
        if task is TaskName.GEOLOCALIZATION:
            return _run_geo(args, running, model, JobProgress())
        if task is TaskName.PAIRED:
            return _run_paired(args, running, model, JobProgress())
        return _run_landform(args, running, model, JobProgress())


def _run_paired(args: argparse.Namespace, urls: StackUrls, model: str, progress: JobProgress) -> int:
    from marsbench.cli.run import run_task
    from marsbench.cli.tables import paired_table

    record, path = run_task(
        urls,
        task=TaskName.PAIRED,
        dataset_dir=args.dataset_dir,
        model=model,
        out_dir=args.out,
        caption_key=args.caption_key,
        top_lists=args.top_lists,
        on_progress=progress,
    )
    print(f"{record.counts.get('pairs')} pairs, caption key {record.caption_key}:")
    print(paired_table(record))
    print(f"skipped while indexing: {record.skipped}\nrun record: {path}")
    return 0


def _run_landform(args: argparse.Namespace, urls: StackUrls, model: str, progress: JobProgress) -> int:
    from marsbench.cli.run import run_task
    from marsbench.cli.tables import landform_table

    record, path = run_task(
        urls,
        task=TaskName.LANDFORM,
        dataset_dir=args.dataset_dir,
        model=model,
        out_dir=args.out,
        max_k=args.max_k,
        on_progress=progress,
    )
    print(landform_table(record))
    skipped = (record.indexing or {}).get("skipped", 0)
    print(f"skipped while indexing: {skipped}\nrun record: {path}")
    return 0


def _run_geo(args: argparse.Namespace, urls: StackUrls, model: str, progress: JobProgress) -> int:
    from marsbench.cli.run import GeoScoring, run_geolocalization
    from marsbench.cli.tables import geo_table
    from marsbench.datasets.geo import landforms as published_landforms

    landforms = published_landforms(args.dataset_dir) if args.landform == "all" else [args.landform]
    if not landforms:
        raise CommandError(f"no ground_truth/<landform>.csv under {args.dataset_dir}")
    modes = list(QueryMode) if args.query_mode == "all" else [QueryMode(args.query_mode)]
    scoring = GeoScoring(
        top_k=args.top_k, radius_deg=args.radius_deg, mix_ratio=args.mix_ratio, temperature=args.temperature
    )
    saved = run_geolocalization(
        urls,
        dataset_dir=args.dataset_dir,
        model=model,
        landforms=landforms,
        modes=modes,
        out_dir=args.out,
        scoring=scoring,
        on_progress=progress,
        on_skip=lambda note: print(f"skipped {note}", file=sys.stderr),
    )
    if not saved:
        raise CommandError("no run could be made (see the skipped query modes above)")
    print(geo_table([run.record for run in saved]))
    skipped = (saved[0].record.indexing or {}).get("skipped", 0)
    print(
        f"skipped while indexing: {skipped}\nrun records: {args.out} ({len(saved)} files, maps beside them)"
    )
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from marsbench.cli.benchmark import run_benchmark
    from marsbench.cli.run import ServiceUrls

    urls = ServiceUrls(indexer=args.indexer_url, evaluator=args.evaluator_url, encoder=args.encoder_url)
    return run_benchmark(
        args.config, out_dir=args.out, urls=urls, data_dir=_data_dir(args.data_dir), dry_run=args.dry_run
    )


def _cmd_report(args: argparse.Namespace) -> int:
    from marsbench.cli.report import generate_report

    written = generate_report(args.results, args.out)
    print(f"{written.summary}\nreport: {written.index}\nmarkdown: {written.markdown}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    if args.url:
        from marsbench.client import EncoderClient

        with EncoderClient(args.url) as encoder:
            cards = encoder.models()
    else:  # the encoder's own app, in this process: nothing is loaded
        from marsbench.cli.local_encoder import local_model_cards

        cards = local_model_cards(args.registry, what="`marsbench models` without --encoder-url")
    print("\n".join(card.model_dump_json() for card in cards) if args.json else models_table(cards))
    return 0


def _cmd_jobs(args: argparse.Namespace) -> int:
    from marsbench.cli.jobs import jobs_table
    from marsbench.cli.progress import JobProgress
    from marsbench.client import IndexerClient
    from marsbench.schemas.jobs import JobState

    if args.action != "list" and not args.job_id:
        raise CommandError(f"`marsbench jobs {args.action}` needs a job id (`marsbench jobs` lists them)")
    with IndexerClient(args.url) as indexer:
        if args.action == "list":
            listed = indexer.jobs()
            print("\n".join(j.model_dump_json() for j in listed) if args.json else jobs_table(listed))
            return 0
        if args.action == "resume":
            job = indexer.resume(args.job_id)
            print(f"resumed job {job.id} ({job.task.value}, {job.model}, {job.collection})", file=sys.stderr)
            if args.no_wait:
                return 0
        if args.action == "cancel":
            job = indexer.cancel(args.job_id)
            print(f"cancelling job {job.id}: it stops at its next batch boundary", file=sys.stderr)
            if args.no_wait:
                return 0
        job = indexer.wait(args.job_id, on_progress=JobProgress())
    if job.state is JobState.FAILED:
        raise CommandError(f"job {job.id} failed: {job.error}")
    print(f"job {job.id} {job.state.value}: {job.done} items in {job.collection}, {job.skipped} skipped")
    return 0


def _cmd_collections(args: argparse.Namespace) -> int:
    from marsbench.client import IndexerClient

    if args.action != "list" and not args.target:
        what = "snapshot (its name, as `export` printed it)" if args.action == "import" else "collection name"
        raise CommandError(f"`marsbench collections {args.action}` needs a {what}")
    with IndexerClient(args.url) as indexer:
        if args.action == "list":
            print("\n".join(item.model_dump_json() for item in indexer.collections()))
        elif args.action == "delete":
            if not args.yes and sys.stdin.isatty():
                answer = input(f"delete collection {args.target!r} and every point it holds? [y/N] ")
                if answer.strip().lower() not in ("y", "yes"):
                    raise CommandError("not deleted")
            print(indexer.delete_collection(args.target).model_dump_json())
        elif args.action == "export":
            print(indexer.export_snapshot(args.target).model_dump_json())
        else:
            print(indexer.import_snapshot(Path(args.target).name, args.collection).model_dump_json())
    return 0


COMMANDS = {
    "demo": _cmd_demo,
    "serve": _cmd_serve,
    "data": _cmd_data,
    "run": _cmd_run,
    "benchmark": _cmd_benchmark,
    "report": _cmd_report,
    "models": _cmd_models,
    "jobs": _cmd_jobs,
    "collections": _cmd_collections,
    "train": lambda args: args.train_handler(args),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    if args.command == "serve":  # services log structured lines with request ids (marsbench.observability)
        configure_logging(level)
    else:
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except (CommandError, MarsbenchError, DatasetError, StartupRefused) as exc:
        print(f"marsbench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

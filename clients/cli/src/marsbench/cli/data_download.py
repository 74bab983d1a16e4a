"""`marsbench data download landform|paired|geolocalization --out DIR` (docs/data.md).

landform, geolocalization: the SUSTech hub repo at its pinned revision, copied into DIR (the task's
`dataset/` folder). paired: Mars-VL-Pairs from the hub into DIR/mars_vl_pairs.tsv, then the images
from its URLs into WebDataset shards in DIR. All of it is resumable: rerun the same command.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from marsbench.cli.progress import format_duration, progress_bar

if TYPE_CHECKING:
    from marsbench.datasets.download.pairs import DownloadProgress

TASKS = ("landform", "paired", "geolocalization")


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def add_download_parser(data: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers `download` under the `marsbench data` group; the handler is `data_handler`.

    Imports nothing heavy: the parser is built for every command.
    """
    parser = data.add_parser(
        "download",
        help="Download a published dataset (hub snapshot; paired: its images into shards). Resumable.",
        description="landform / geolocalization: the SUSTech hub dataset at its pinned revision, copied "
        "into --out. paired: Mars-VL-Pairs into --out/mars_vl_pairs.tsv, then the images from its URLs "
        "into WebDataset shards 000000.tar, ... in --out, failures listed by key in "
        "download_failures.json/.csv. Rerun the same command to resume. See docs/data.md.",
    )
    parser.add_argument("dataset", choices=TASKS)
    parser.add_argument("--out", required=True, type=Path, help="The task's dataset/ folder to fill.")
    parser.add_argument(
        "--revision", help="Hub revision (commit hash, tag, branch) instead of the pinned one."
    )
    parser.add_argument("--cache-dir", type=Path, help="Hub cache (default: $HF_HUB_CACHE).")
    parser.add_argument(
        "--offline",
        action="store_true",
        default=_env_true("HF_HUB_OFFLINE"),
        help="Use only what the hub cache holds (default when HF_HUB_OFFLINE is set).",
    )
    pairs = parser.add_argument_group("paired images (the reference's img2dataset settings by default)")
    pairs.add_argument("--tsv", type=Path, help="Use this pairs TSV instead of building it from the hub.")
    pairs.add_argument("--tsv-only", action="store_true", help="Write mars_vl_pairs.tsv; fetch no images.")
    pairs.add_argument("--workers", type=int, help="Concurrent downloads (default 16).")
    pairs.add_argument("--timeout", type=float, help="Seconds per connect or read (default 10).")
    pairs.add_argument("--retries", type=int, help="Tries after the first for what may pass (default 3).")
    pairs.add_argument("--shard-size", type=int, help="Samples per shard (default 1000).")
    pairs.add_argument("--image-size", type=int, help="Side of the square images (default 512).")
    pairs.add_argument("--resize-mode", choices=("center_crop", "no"), help="Default center_crop.")
    parser.set_defaults(data_handler=run_download)


class DownloadLine:
    """Items, percentage, rate and ETA on one line (redrawn in place on a terminal)."""

    def __init__(self, stream: TextIO | None = None, *, interval_s: float = 0.5) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._interval = interval_s
        self._last = ""
        self._drawn = 0.0

    def __call__(self, progress: DownloadProgress) -> None:
        handled = progress.done + progress.failed
        fraction = handled / progress.total if progress.total else None
        rate = f"{progress.rate:.1f} items/s" if progress.rate else "- items/s"
        line = (
            f"downloading {progress_bar(fraction)} {100 * (fraction or 0):5.1f}% "
            f"{progress.done}/{progress.total} {rate} ETA {format_duration(progress.eta_s)} "
            f"failed {progress.failed}"
        )
        final = handled >= progress.total
        now = time.monotonic()
        if not final and now - self._drawn < self._interval:
            return
        self._drawn = now
        if self._tty:
            self._stream.write("\r" + line.ljust(len(self._last)) + ("\n" if final else ""))
            self._stream.flush()
        elif final or line != self._last:
            self._stream.write(line + "\n")
        self._last = line


def _warn(message: str | None) -> None:
    if message:
        print(f"marsbench: warning: {message}", file=sys.stderr)


def run_download(args: argparse.Namespace) -> int:
    from marsbench.datasets.download.hub import download_hub_dataset, pairs_tsv_from_hub

    hub = {"revision": args.revision, "cache_dir": args.cache_dir, "offline": args.offline}
    if args.dataset != "paired":
        result = download_hub_dataset(args.dataset, args.out, **hub)
        _warn(result.warning)
        print(
            f"{result.source.repo_id} at {result.source.commit} -> {result.out}: {result.files} files "
            f"({result.copied} copied, {result.skipped} already there)"
        )
        return 0
    if args.tsv is not None:
        tsv = args.tsv
    else:
        tsv, rows, source, warning = pairs_tsv_from_hub(args.out, **hub)
        _warn(warning)
        print(f"{source.repo_id} at {source.commit}: {rows} pairs -> {tsv}")
    if args.tsv_only:
        return 0
    return _download_images(args, tsv)


def _download_images(args: argparse.Namespace, tsv: Path) -> int:
    from pydantic import ValidationError

    from marsbench.cli.errors import CommandError
    from marsbench.datasets.download.pairs import PairsDownloadOptions, download_pairs

    try:
        given = {
            "workers": args.workers,
            "timeout_s": args.timeout,
            "retries": args.retries,
            "shard_size": args.shard_size,
            "image_size": args.image_size,
            "resize_mode": args.resize_mode,
        }
        options = PairsDownloadOptions.model_validate({k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        raise CommandError(f"invalid download option: {exc}") from exc
    try:
        result = download_pairs(tsv, args.out, options, on_progress=DownloadLine())
    except KeyboardInterrupt:
        print("\ninterrupted: what was fetched is kept; rerun the same command to resume", file=sys.stderr)
        return 130
    print(
        f"{result.rows} pairs in {result.shards} shards in {result.out}: "
        f"{result.present_before} already there, "
        f"{result.fetched} fetched, {result.failed} failed ({result.failures_file}), "
        f"{format_duration(result.elapsed_s)}"
    )
    return 0

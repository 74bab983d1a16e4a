"""The paired set's images, from the TSV's URLs into WebDataset shards, resumably (img2dataset's job).

Row i of the TSV goes to shard `i // shard_size` (`000000.tar`, ...), as img2dataset assigns
rows. A sample is `<key>.jpg` (see `images`) and `<key>.json` holding `key`, `url`,
`ori_caption`, `refined_caption` (top level, where `marsbench.datasets.paired` reads the caption)
and img2dataset's `status`, `width`, `height`, `original_width`, `original_height`, `sha256`. The
key is the TSV's `key` column when it names every row uniquely and safely, else img2dataset's
positional key (shard number and row within it); `download_manifest.json` says which.

Resuming: see `shards`. Every run fetches exactly the keys that are neither in a complete shard nor
staged, including the ones that failed before (a 404 fails again quickly). The manifest pins the
TSV (its SHA-256) and the settings that shape the shards; a rerun with another TSV or other
settings into the same folder is refused rather than mixed.

Failures are written beside the shards, `download_failures.json` and `.csv`, one entry per key that
is still missing, with the URL, the error, the last HTTP status and the tries made.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from marsbench.datasets.download.images import FetchPolicy, ImageError, ResizeMode, fetch, process_image
from marsbench.datasets.download.shards import (
    assemble_shard,
    clean_staging,
    shard_keys,
    shard_name,
    stage_sample,
    staged_keys,
    staging_dir,
)
from marsbench.datasets.download.tsv import PairRow, positional_key, read_tsv, tsv_keys_usable
from marsbench.datasets.errors import DatasetError
from marsbench.files import file_sha256, write_bytes_atomic

MANIFEST_NAME = "download_manifest.json"
FAILURES_JSON = "download_failures.json"
FAILURES_CSV = "download_failures.csv"
USER_AGENT = "marsbench-data-download/1 (+img2dataset-compatible shards)"


class PairsDownloadOptions(BaseModel):
    """How the images are fetched and shaped; defaults are the reference's img2dataset call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(default=512, ge=8, le=8192)
    resize_mode: ResizeMode = "center_crop"
    quality: int = Field(default=95, ge=1, le=100)
    shard_size: int = Field(default=1000, ge=1, le=1_000_000)
    workers: int = Field(default=16, ge=1, le=256)
    timeout_s: float = Field(default=10.0, gt=0)
    retries: int = Field(default=3, ge=0, le=20)
    backoff_s: float = Field(default=1.0, ge=0)
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1)

    def policy(self) -> FetchPolicy:
        return FetchPolicy(
            timeout_s=self.timeout_s,
            retries=self.retries,
            backoff_s=self.backoff_s,
            max_bytes=self.max_bytes,
            deadline_s=max(60.0, 6 * self.timeout_s),
        )


class DownloadManifest(BaseModel):
    """What an out folder's shards were made from; a resumed run must match it."""

    model_config = ConfigDict(extra="forbid")

    format_version: Literal[1] = 1
    tsv_sha256: str
    rows: int
    key_source: Literal["tsv", "position"]
    image_size: int
    resize_mode: ResizeMode
    quality: int
    shard_size: int


class DownloadFailure(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    row: int
    shard: str
    url: str
    error: str
    http_status: int | None = None
    attempts: int = 0


class PairsDownloadResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    out: str
    rows: int
    shards: int
    present_before: int  # samples already in complete shards or staged when the run began
    fetched: int
    failed: int
    shards_written: int
    failures_file: str
    elapsed_s: float
    key_source: Literal["tsv", "position"]


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    done: int  # samples present (before the run and fetched since)
    failed: int
    total: int
    rate: float | None  # items handled per second in this run
    eta_s: float | None


ProgressHandler = Callable[[DownloadProgress], None]


@dataclass(frozen=True, slots=True)
class _Item:
    row: int
    key: str
    shard: str
    pair: PairRow


def plan(rows: list[PairRow], shard_size: int) -> tuple[list[_Item], Literal["tsv", "position"]]:
    """Each row's key and shard (module docs)."""
    source: Literal["tsv", "position"] = "tsv" if tsv_keys_usable(rows) else "position"
    items = [
        _Item(
            row=i,
            key=row.key if source == "tsv" else positional_key(i, shard_size),
            shard=shard_name(i // shard_size),
            pair=row,
        )
        for i, row in enumerate(rows)
    ]
    return items, source


def sample_json(item: _Item, image_sha256: str, size: tuple[int, int, int, int]) -> bytes:
    meta: dict[str, object] = {
        "key": item.key,
        "url": item.pair.url,
        "ori_caption": item.pair.ori_caption,
        "refined_caption": item.pair.refined_caption,
        "status": "success",
        "error_message": None,
        "width": size[0],
        "height": size[1],
        "original_width": size[2],
        "original_height": size[3],
        "sha256": image_sha256,
    }
    if item.pair.key and item.pair.key != item.key:
        meta["tsv_key"] = item.pair.key
    return json.dumps(meta, ensure_ascii=False).encode("utf-8")


def _check_manifest(out: Path, wanted: DownloadManifest) -> None:
    path = out / MANIFEST_NAME
    if path.is_file():
        try:
            found = DownloadManifest.model_validate_json(path.read_bytes())
        except ValidationError as exc:
            raise DatasetError(f"{path} is not a download manifest marsbench can read: {exc}") from exc
        if found != wanted:
            diff = {
                k: (v, getattr(wanted, k)) for k, v in found.model_dump().items() if v != getattr(wanted, k)
            }
            raise DatasetError(
                f"{out} holds a download made from another TSV or with other settings {diff} "
                "(found, wanted): use a new --out folder, or remove the old shards and the manifest"
            )
        return
    write_bytes_atomic(path, wanted.model_dump_json(indent=2).encode("utf-8"))


def _load_failures(out: Path) -> dict[str, DownloadFailure]:
    path = out / FAILURES_JSON
    if not path.is_file():
        return {}
    try:
        listed = json.loads(path.read_bytes())
        return {f.key: f for f in (DownloadFailure.model_validate(entry) for entry in listed)}
    except (ValueError, TypeError, ValidationError):
        return {}  # rewritten at the end of this run


def write_failures(out: Path, failures: list[DownloadFailure]) -> Path:
    """Both failure files, atomically, in row order."""
    ordered = sorted(failures, key=lambda f: f.row)
    write_bytes_atomic(
        out / FAILURES_JSON,
        json.dumps([f.model_dump() for f in ordered], indent=1, ensure_ascii=False).encode("utf-8"),
    )
    text = io.StringIO()
    writer = csv.writer(text)
    fields = list(DownloadFailure.model_fields)
    writer.writerow(fields)
    for failure in ordered:
        writer.writerow([getattr(failure, name) for name in fields])
    write_bytes_atomic(out / FAILURES_CSV, text.getvalue().encode("utf-8"))
    return out / FAILURES_JSON


class _Fetcher:
    """Fetches, shapes and stages one sample (runs in the pool's threads)."""

    def __init__(self, out: Path, client: httpx.Client, options: PairsDownloadOptions) -> None:
        self._out, self._client, self._options = out, client, options
        self._policy = options.policy()
        self.stop = threading.Event()

    def __call__(self, item: _Item) -> DownloadFailure | None:
        if self.stop.is_set():
            return None
        got = fetch(self._client, item.pair.url, self._policy, sleep=self.stop.wait)
        if got.data is None:
            return self._failure(item, got.error or "failed", got.status, got.attempts)
        try:
            image = process_image(
                got.data,
                image_size=self._options.image_size,
                resize_mode=self._options.resize_mode,
                quality=self._options.quality,
            )
        except ImageError as exc:
            return self._failure(item, str(exc), got.status, got.attempts)
        size = (image.width, image.height, image.original_width, image.original_height)
        meta = sample_json(item, hashlib.sha256(image.data).hexdigest(), size)
        stage_sample(staging_dir(self._out, item.shard), item.key, image.data, meta)
        return None

    @staticmethod
    def _failure(item: _Item, error: str, status: int | None, attempts: int) -> DownloadFailure:
        return DownloadFailure(
            key=item.key,
            row=item.row,
            shard=item.shard,
            url=item.pair.url,
            error=error,
            http_status=status,
            attempts=attempts,
        )


class _Tally:
    def __init__(self, total: int, present: int, on_progress: ProgressHandler | None) -> None:
        self.total, self.present, self.fetched, self.failed = total, present, 0, 0
        self._on_progress = on_progress
        self._started = time.monotonic()

    def report(self) -> None:
        if self._on_progress is None:
            return
        handled = self.fetched + self.failed
        elapsed = time.monotonic() - self._started
        rate = handled / elapsed if handled and elapsed > 0 else None
        left = self.total - self.present - handled
        eta = left / rate if rate else None
        self._on_progress(DownloadProgress(self.present + self.fetched, self.failed, self.total, rate, eta))


def download_pairs(
    tsv: Path,
    out: Path,
    options: PairsDownloadOptions | None = None,
    *,
    on_progress: ProgressHandler | None = None,
    transport: httpx.BaseTransport | None = None,
) -> PairsDownloadResult:
    """Downloads every missing image of `tsv` into shards in `out` (module docs); resumable.

    `transport` replaces httpx's network transport (tests). Interrupted (KeyboardInterrupt), it
    stops fetching, keeps what it staged, writes the failure files and re-raises.
    """
    options = options or PairsDownloadOptions()
    started = time.monotonic()
    rows = read_tsv(tsv)
    if not rows:
        raise DatasetError(f"{tsv} has no rows")
    items, key_source = plan(rows, options.shard_size)
    out.mkdir(parents=True, exist_ok=True)
    _check_manifest(
        out,
        DownloadManifest(
            tsv_sha256=file_sha256(tsv),
            rows=len(rows),
            key_source=key_source,
            image_size=options.image_size,
            resize_mode=options.resize_mode,
            quality=options.quality,
            shard_size=options.shard_size,
        ),
    )
    by_shard: dict[str, list[_Item]] = {}
    for item in items:
        by_shard.setdefault(item.shard, []).append(item)

    todo: list[_Item] = []
    pending: dict[str, int] = {}
    shards_written = 0
    for shard, members in by_shard.items():
        in_shard = shard_keys(out / shard) if (out / shard).is_file() else set()
        present = (in_shard or set()) | staged_keys(staging_dir(out, shard))
        missing = [item for item in members if item.key not in present]
        todo.extend(missing)
        pending[shard] = len(missing)
        if not missing and staging_dir(out, shard).is_dir():  # killed before assembling it
            shards_written += assemble_shard(out, shard, [m.key for m in members]) > 0

    tally = _Tally(len(items), len(items) - len(todo), on_progress)
    previous = _load_failures(out)
    failures: dict[str, DownloadFailure] = {}
    attempted: set[str] = set()
    tally.report()

    client = httpx.Client(
        transport=transport,
        follow_redirects=True,
        headers={"User-Agent": USER_AGENT},
        limits=httpx.Limits(max_connections=options.workers, max_keepalive_connections=options.workers),
    )
    fetcher = _Fetcher(out, client, options)
    pool = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="marsbench-download")
    interrupted = False
    try:
        queue = iter(todo)
        running: dict[Future[DownloadFailure | None], _Item] = {}
        window = 2 * options.workers
        while True:
            while len(running) < window:
                queued = next(queue, None)
                if queued is None:
                    break
                running[pool.submit(fetcher, queued)] = queued
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                item = running.pop(future)
                attempted.add(item.key)
                failure = future.result()
                if failure is None:
                    tally.fetched += 1
                else:
                    tally.failed += 1
                    failures[item.key] = failure
                pending[item.shard] -= 1
                if pending[item.shard] == 0:
                    order = [m.key for m in by_shard[item.shard]]
                    shards_written += assemble_shard(out, item.shard, order) > 0
                tally.report()
    except BaseException:
        interrupted = True
        fetcher.stop.set()
        raise
    finally:
        pool.shutdown(wait=not interrupted, cancel_futures=True)
        if not interrupted:  # else the pool's threads may still be finishing a request
            client.close()
        todo_keys = {item.key for item in todo}
        carried = [f for key, f in previous.items() if key in todo_keys and key not in attempted]
        failures_file = write_failures(out, [*failures.values(), *carried])
    clean_staging(out)
    return PairsDownloadResult(
        out=str(out),
        rows=len(rows),
        shards=len(by_shard),
        present_before=len(items) - len(todo),
        fetched=tally.fetched,
        failed=tally.failed,
        shards_written=shards_written,
        failures_file=str(failures_file),
        elapsed_s=round(time.monotonic() - started, 3),
        key_source=key_source,
    )

"""`LocalStack`: the three services in one process, sharing one vector store, and the trainer.

The embedded Qdrant engine allows one process per shard, so single-machine use runs the
encoder, indexer and evaluator as three uvicorn servers on one event loop. The indexer and
evaluator still reach the encoder over loopback HTTP, through the same client as in a
distributed deployment, so one code path serves both.

`marsbench serve` adds the trainer app (POST /v1/train) as a fourth server when the training
package is installed (`available_trainer`). It writes under `<data_dir>/training` unless
MARSBENCH_TRAIN_DIR says otherwise, and that folder joins the encoder's model roots, so the encoder of
the same stack serves the checkpoints it writes (`<base>@<train dir>/<out>/<name>.pt`).

One stack owns its data dir: `DataDirLock` takes an exclusive `flock` on `<data_dir>/.marsbench.lock`
before anything is opened, so a second `marsbench serve` (or demo, or run with local services) on
the same folder stops at once with a message naming the folder and the holder's pid, instead of
two indexers resuming the same jobs and writing the same store. The kernel drops the lock when the
process exits, however it exits, so a crash leaves no stale lock behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from fastapi import FastAPI

from marsbench.cli.errors import CommandError
from marsbench.cli.extras import ExtraMissing, create_encoder_app, create_trainer_app
from marsbench.cli.extras import encoder_settings as default_encoder_settings
from marsbench.cli.extras import trainer_settings as default_trainer_settings
from marsbench.evaluator.app import create_app as create_evaluator
from marsbench.evaluator.settings import EvaluatorSettings
from marsbench.indexer.app import create_app as create_indexer
from marsbench.indexer.settings import IndexerSettings
from marsbench.security import is_loopback
from marsbench.settings import StoreSettings

if TYPE_CHECKING:
    from marsbench.encoder.settings import EncoderSettings
    from marsbench.training.settings import TrainerSettings

log = logging.getLogger(__name__)


LOCK_NAME = ".marsbench.lock"
GRACEFUL_S = 3  # uvicorn's graceful shutdown timeout, seconds
_NEEDS_ENCODER = "running the services in this process"
_NEEDS_TRAINER = "the trainer of `marsbench serve`"
TRAIN_DIR_NAME = "training"  # the trainer's default folder, under the data dir


class DataDirBusy(CommandError):
    """Another process holds the data dir; the message names the folder and that process."""


class DataDirLock:
    """An exclusive, non-blocking `flock` on `<data_dir>/.marsbench.lock`, holding the owner's pid."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.path = self.data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise DataDirBusy(
                f"data dir {self.data_dir} is in use by another marsbench process (pid {holder}); stop "
                "it first, or give this one its own --data-dir / MARSBENCH_DATA_DIR"
            ) from None
        # The pid is written only once the lock is ours, so a refused process never overwrites it.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing drops the flock


@dataclass(frozen=True)
class StackUrls:
    encoder: str
    indexer: str
    evaluator: str
    trainer: str | None = None  # only a stack started with the trainer has one


def available_trainer() -> TrainerSettings | None:
    """The trainer's settings from the environment, or None, said in one log line with the reason,
    where the training package (the CLI's `encoder` extra) is not installed."""
    try:
        return default_trainer_settings(_NEEDS_TRAINER)
    except ExtraMissing as exc:
        log.warning("trainer not available, serving the encoder, indexer and evaluator only: %s", exc)
        return None


def stack_trainer(settings: TrainerSettings, *, data_dir: Path, host: str) -> TrainerSettings:
    """The stack's trainer: on the stack's host, writing under `<data_dir>/training` unless its
    settings name a train dir (MARSBENCH_TRAIN_DIR)."""
    if "train_dir" in settings.model_fields_set:
        return settings.model_copy(update={"host": host})
    train_dir = Path(data_dir).expanduser().resolve() / TRAIN_DIR_NAME
    return settings.model_copy(update={"host": host, "train_dir": train_dir})


def serving_train_dir(encoder: EncoderSettings, train_dir: Path) -> EncoderSettings:
    """The encoder with `train_dir` among its model roots, so it serves what the trainer writes.

    Unchanged where it would serve it already: no roots on loopback means any path (listing one folder
    there would confine it to that one), and a root holding the folder covers it. Beyond loopback without
    roots, where no request path is served, the trainer's folder becomes the one root."""
    if not encoder.model_roots and is_loopback(encoder.host):
        return encoder
    folder = Path(train_dir).expanduser().resolve()
    if any(folder.is_relative_to(Path(root).expanduser().resolve()) for root in encoder.model_roots):
        return encoder
    return encoder.model_copy(update={"model_roots": [*encoder.model_roots, str(folder)]})


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class LocalStack:
    """Binds three sockets (port 0 picks free ones), four with the trainer, then serves the apps
    until stopped."""

    def __init__(
        self,
        *,
        data_dir: Path,
        host: str = "127.0.0.1",
        ports: tuple[int, int, int] = (0, 0, 0),
        qdrant_url: str | None = None,
        encoder_settings: EncoderSettings | None = None,
        trainer: TrainerSettings | None = None,
        trainer_port: int = 0,
        log_level: str = "warning",
    ) -> None:
        """`trainer`: the trainer app's settings (`available_trainer()`), to serve it too, on
        `trainer_port` (see `stack_trainer` for its train dir); None: the three services alone."""
        # First, before a socket or the store is opened: a second stack on this folder stops here.
        self._lock = DataDirLock(data_dir).acquire()
        every_port = [*ports, trainer_port] if trainer is not None else list(ports)
        try:
            self._sockets = [_bind(host, port) for port in every_port]
        except BaseException:
            self._lock.release()
            raise
        encoder_url, indexer_url, evaluator_url, *trainer_url = (_url(host, sock) for sock in self._sockets)
        self.urls = StackUrls(encoder_url, indexer_url, evaluator_url, trainer=next(iter(trainer_url), None))
        try:
            # The bind host decides whether the services need an API key and dataset roots
            # (marsbench.security); each refuses to start when it would listen beyond loopback without.
            encoder = (encoder_settings or default_encoder_settings(_NEEDS_ENCODER)).model_copy(
                update={"host": host}
            )
            training = None if trainer is None else stack_trainer(trainer, data_dir=data_dir, host=host)
            if training is not None:
                encoder = serving_train_dir(encoder, training.train_dir)
            self._store = StoreSettings(data_dir=data_dir, qdrant_url=qdrant_url).open_store()
        except BaseException:
            self._close_sockets()
            self._lock.release()
            raise
        try:
            encoder_urls = [self.urls.encoder]
            apps: list[FastAPI] = [
                create_encoder_app(encoder, _NEEDS_ENCODER),
                create_indexer(
                    IndexerSettings(
                        data_dir=data_dir, qdrant_url=qdrant_url, encoder_urls=encoder_urls, host=host
                    ),
                    store=self._store,
                ),
                create_evaluator(
                    EvaluatorSettings(
                        data_dir=data_dir,
                        qdrant_url=qdrant_url,
                        encoder_urls=encoder_urls,
                        host=host,
                        indexer_url=self.urls.indexer,
                    ),
                    store=self._store,
                ),
            ]
            if training is not None:
                apps.append(create_trainer_app(training, _NEEDS_TRAINER))
        except BaseException:
            self._store.close()
            self._close_sockets()
            self._lock.release()
            raise
        # On stop, requests still open after GRACEFUL_S are cut: as long as the indexer waits for its
        # jobs (SHUTDOWN_S), so SIGTERM ends in seconds even mid-forward (issue 17, item 9).
        self._servers = [
            uvicorn.Server(
                uvicorn.Config(app, log_level=log_level, lifespan="on", timeout_graceful_shutdown=GRACEFUL_S)
            )
            for app in apps
        ]
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._failure: BaseException | None = None

    def _close_sockets(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()

    async def serve(self) -> None:
        """Serve until `stop()` (or Ctrl-C); closes the shared store afterwards."""
        try:
            await asyncio.gather(
                *(
                    server.serve(sockets=[sock])
                    for server, sock in zip(self._servers, self._sockets, strict=True)
                )
            )
        finally:
            self._store.close()
            self._lock.release()

    def start_in_thread(self, timeout_s: float = 60.0) -> StackUrls:
        """Run the stack on a background thread; returns once every server has started."""
        self._thread = threading.Thread(target=self._thread_main, name="marsbench-stack", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s) or self._failure is not None:
            self.stop()
            raise RuntimeError(f"local services did not start: {self._failure}")
        return self.urls

    def stop(self) -> None:
        for server in self._servers:
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(30)

    def __enter__(self) -> StackUrls:
        return self.start_in_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _thread_main(self) -> None:
        async def main() -> None:
            task = asyncio.ensure_future(self.serve())
            while not all(server.started for server in self._servers):
                if task.done():
                    break
                await asyncio.sleep(0.02)
            self._started.set()
            await task

        try:
            asyncio.run(main())
        except BaseException as exc:
            self._failure = exc
            log.exception("local services stopped with an error")
        finally:
            self._started.set()
            self._close_sockets()

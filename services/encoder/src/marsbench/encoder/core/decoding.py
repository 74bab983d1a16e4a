"""Image decoding shared fairly between requests, and the pixel budget of one request.

Decoding costs CPU by the pixel. A request used to be one task on the preprocessing threads, so a
request of many large images held them until it was done and every other request's images waited
behind it (15 s in the filed case). `FairQueue` runs one image at a time per task and takes turns
between requests (round robin), so a small request waits for at most about one image per thread.
"""

from __future__ import annotations

import asyncio
import io
import warnings
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

from PIL import Image

from marsbench.encoder.core.threads import in_thread

T = TypeVar("T")
R = TypeVar("R")


@dataclass(eq=False)
class _Job(Generic[R]):
    call: Callable[[], R]
    future: asyncio.Future[R]


class FairQueue:
    """Runs work items on `executor`, at most `workers` at a time, taking turns between callers."""

    def __init__(self, executor: Executor, workers: int) -> None:
        self._executor = executor
        self._workers = workers
        self._running = 0
        # One queue of jobs per caller, in turn order: the caller served last moves to the end.
        self._turns: OrderedDict[object, deque[_Job[Any]]] = OrderedDict()

    def pending(self) -> int:
        return sum(len(jobs) for jobs in self._turns.values())

    async def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """`[fn(item) for item in items]`, each on the pool; the first failure (in item order) is
        raised, and the caller's items not yet started are dropped then, or when it is cancelled."""
        loop = asyncio.get_running_loop()
        jobs: deque[_Job[Any]] = deque(_Job(partial(fn, item), loop.create_future()) for item in items)
        futures = [job.future for job in jobs]
        if not jobs:
            return []
        key = object()
        self._turns[key] = jobs
        self._pump()
        try:
            return [await future for future in futures]
        finally:
            self._turns.pop(key, None)
            for future in futures:
                if not future.done():
                    future.cancel()
                elif not future.cancelled():
                    future.exception()  # retrieved: a later item's error is not logged as lost

    def _pump(self) -> None:
        while self._running < self._workers and self._turns:
            key, jobs = next(iter(self._turns.items()))
            job = jobs.popleft()
            if jobs:
                self._turns.move_to_end(key)
            else:
                del self._turns[key]
            if job.future.done():
                continue
            self._running += 1
            task = asyncio.ensure_future(in_thread(self._executor, job.call))
            task.add_done_callback(partial(self._finished, job))

    def _finished(self, job: _Job[Any], task: asyncio.Future[Any]) -> None:
        self._running -= 1
        if job.future.done():
            if not task.cancelled():
                task.exception()
        elif task.cancelled():
            job.future.cancel()
        elif (error := task.exception()) is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(task.result())
        self._pump()


def header_pixels(data: bytes) -> int:
    """Width x height from the image's header (nothing is decoded); 0 for bytes that are not an
    image header PIL reads, which decoding then refuses by the item's index."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except Exception:  # refused, with its reason, when it is decoded
        return 0
    return int(width) * int(height)


def request_pixels(images: Sequence[bytes]) -> int:
    return sum(header_pixels(data) for data in images)

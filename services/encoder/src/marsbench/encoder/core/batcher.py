"""Dynamic batching across concurrent requests.

One `DynamicBatcher` per (model, modality). Requests append their items to a FIFO; a single
background task closes a batch when it holds `max_batch_size` items or `max_wait_s` after the
first item arrived, runs it on the device executor (one forward at a time per device, never on
the event loop), and hands each request its rows in order. A request larger than a batch is
split across batches. With `per_request`, each request is one batch of its own, never merged nor
split: for models whose vectors depend on their batch-mates (pooling that sees padding), the
caller's grouping is then part of the protocol. The batcher knows nothing about HTTP or model
internals: it batches items of any type through a `run_batch` function returning one row per item.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from marsbench.encoder.core.threads import in_thread
from marsbench.encoder.errors import EncoderError, ForwardFailed, Overloaded

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Request(Generic[T]):
    items: Sequence[T]
    future: asyncio.Future[np.ndarray]
    taken: int = 0  # items already placed in a batch
    rows: list[np.ndarray] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return len(self.items) - self.taken


class DeviceActivity:
    """Forwards in flight on one device, shared by every batcher that runs on it. A batcher only
    waits for more items while the device is busy: an idle device takes a lone request at once
    (no collection delay at low load), and under load batches fill during the running forward."""

    def __init__(self) -> None:
        self.running = 0


@dataclass(frozen=True)
class BatcherStats:
    queued_items: int
    batches: int
    items: int


class DynamicBatcher(Generic[T]):
    def __init__(
        self,
        name: str,
        run_batch: Callable[[list[T]], np.ndarray],
        *,
        executor: Executor,
        max_batch_size: int,
        max_wait_s: float,
        max_queued_items: int,
        per_request: bool = False,
        activity: DeviceActivity | None = None,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.name = name
        self._run_batch = run_batch
        self._executor = executor
        self.max_batch_size = max_batch_size
        self._max_wait_s = max_wait_s
        self._max_queued = max_queued_items
        self._per_request = per_request
        self._activity = activity
        # Told each successful batch's size and forward seconds (the service's metrics).
        self._on_batch = on_batch
        self._queue: deque[_Request[T]] = deque()
        self._queued_items = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._batches = 0
        self._items = 0

    def stats(self) -> BatcherStats:
        return BatcherStats(self._queued_items, self._batches, self._items)

    async def submit(self, items: Sequence[T]) -> np.ndarray:
        """Embed `items`; returns their rows in order. Raises Overloaded when the queue is full."""
        if not items:
            raise ValueError("submit() needs at least one item")
        if self._queued_items + len(items) > self._max_queued:
            raise Overloaded(self.name, self._queued_items, retry_after_s=max(self._max_wait_s, 1.0))
        self._ensure_running()
        request: _Request[T] = _Request(items, asyncio.get_running_loop().create_future())
        self._queue.append(request)
        self._queued_items += len(items)
        self._wakeup.set()
        try:
            return await request.future
        finally:
            if request.remaining:  # the caller went away: drop what is still queued
                self._queued_items -= request.remaining
                request.taken = len(request.items)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for request in self._queue:
            if not request.future.done():
                request.future.set_exception(RuntimeError(f"batcher {self.name} closed"))
        self._queue.clear()

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher:{self.name}")

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            deadline = loop.time() + self._max_wait_s
            while not self._per_request and self._queued_items < self.max_batch_size and self._device_busy():
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
            parts = self._take_batch()
            if not self._queue:
                self._wakeup.clear()
            if parts:
                await self._run(parts)

    def _device_busy(self) -> bool:
        # Without a shared activity record, always collect for max_wait_s (the plain policy).
        return self._activity is None or self._activity.running > 0

    def _take_batch(self) -> list[tuple[_Request[T], int, int]]:
        """Pop up to max_batch_size items in FIFO order, as (request, start, stop) slices."""
        parts: list[tuple[_Request[T], int, int]] = []
        room = self.max_batch_size
        while self._per_request and self._queue:
            request = self._queue.popleft()
            if not request.future.done() and request.remaining:
                parts.append((request, request.taken, len(request.items)))
                self._queued_items -= request.remaining
                request.taken = len(request.items)
                return parts
        while self._queue and room > 0:
            request = self._queue[0]
            if request.future.done() or request.remaining == 0:
                self._queue.popleft()
                continue
            take = min(room, request.remaining)
            parts.append((request, request.taken, request.taken + take))
            request.taken += take
            room -= take
            self._queued_items -= take
            if request.remaining == 0:
                self._queue.popleft()
        return parts

    async def _run(self, parts: list[tuple[_Request[T], int, int]]) -> None:
        batch = [item for request, start, stop in parts for item in request.items[start:stop]]
        if self._activity is not None:
            self._activity.running += 1
        started = time.perf_counter()
        try:
            # in_thread: a StopIteration from the forward would otherwise never reach the future.
            rows = await in_thread(self._executor, self._run_batch, batch)
        except Exception as exc:  # one bad batch fails its requests, never the batcher
            log.exception("batch of %d items failed in %s", len(batch), self.name)
            error = exc if isinstance(exc, EncoderError) else ForwardFailed(self.name, len(batch), exc)
            for request, _, _ in parts:
                self._fail(request, error)
            return
        finally:
            if self._activity is not None:
                self._activity.running -= 1
        self._batches += 1
        self._items += len(batch)
        if self._on_batch is not None:
            self._on_batch(len(batch), time.perf_counter() - started)
        offset = 0
        for request, start, stop in parts:
            count = stop - start
            request.rows.append(rows[offset : offset + count])
            offset += count
            complete = sum(len(r) for r in request.rows) == len(request.items)
            if complete and not request.future.done():
                request.future.set_result(np.concatenate(request.rows, axis=0))

    def _fail(self, request: _Request[T], exc: Exception) -> None:
        if request.remaining:
            self._queued_items -= request.remaining
            request.taken = len(request.items)
        if not request.future.done():
            request.future.set_exception(exc)

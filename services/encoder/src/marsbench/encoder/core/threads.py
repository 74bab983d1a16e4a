"""Running blocking work off the event loop so that every exception comes back to the caller.

`asyncio` futures cannot hold `StopIteration` (Python refuses it: it would end a generator), so a
worker thread that raised it left its future pending forever, and whoever awaited it (a load
holding the model's lock, a batch, a request's decoding) hung. Every thread hop of the encoder goes
through `in_thread`, which turns such an exception into a RuntimeError that names it.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import Executor
from functools import partial
from typing import TypeVar

R = TypeVar("R")


def guarded(fn: Callable[..., R], *args: object) -> R:
    """`fn(*args)`, with StopIteration (and StopAsyncIteration) re-raised as a RuntimeError a future
    can carry; the original stays attached as `__cause__`."""
    try:
        return fn(*args)
    except (StopIteration, StopAsyncIteration) as exc:
        name = getattr(fn, "__qualname__", None) or repr(fn)
        raise RuntimeError(f"{name} raised {type(exc).__name__}") from exc


async def in_thread(executor: Executor | None, fn: Callable[..., R], *args: object) -> R:
    """`fn(*args)` on `executor` (None: asyncio's default one), in a copy of the caller's context
    (the request id follows the work, as with asyncio.to_thread)."""
    context = contextvars.copy_context()
    call = partial(context.run, guarded, fn, *args)
    return await asyncio.get_running_loop().run_in_executor(executor, call)

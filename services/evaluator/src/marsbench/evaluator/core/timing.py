"""Wall-clock seconds per phase of a run, for the record's `provenance.timings`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class PhaseTimer:
    """Adds up the seconds spent in named phases (`with timer.phase("search"): ...`).

    Phases are meant not to nest, so their sum never exceeds the run's wall time; a phase entered
    twice adds up. `total()` is the time since the timer was made.
    """

    def __init__(self) -> None:
        self._started = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def total(self) -> float:
        return time.perf_counter() - self._started

"""Which resumable units (shard files, folders) are completely written.

A unit is finished when the reader has passed its end *and* every record it yielded has been
written (batches complete out of order, several in flight). Only then may a restarted job skip
it. Thread-safe: the reader thread and pipeline workers both report here.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable


class UnitTracker:
    def __init__(self, on_finished: Callable[[str], None]) -> None:
        self._on_finished = on_finished
        self._outstanding: Counter[str] = Counter()
        self._read: set[str] = set()
        self._finished: set[str] = set()
        self._lock = threading.Lock()

    def submitted(self, units: Iterable[str | None]) -> None:
        """Records of these units are about to be processed (one entry per record)."""
        with self._lock:
            self._outstanding.update(u for u in units if u is not None)

    def processed(self, units: Iterable[str | None]) -> None:
        """These records are written (or skipped for good)."""
        finished = []
        with self._lock:
            for unit in units:
                if unit is None:
                    continue
                self._outstanding[unit] -= 1
                if self._outstanding[unit] == 0 and unit in self._read and unit not in self._finished:
                    del self._outstanding[unit]
                    self._finished.add(unit)
                    finished.append(unit)
        for unit in finished:
            self._on_finished(unit)

    def read_to_end(self, unit: str) -> None:
        """The reader yielded the unit's last record."""
        with self._lock:
            self._read.add(unit)
            done = self._outstanding[unit] <= 0 and unit not in self._finished
            if done:
                self._outstanding.pop(unit, None)
                self._finished.add(unit)
        if done:
            self._on_finished(unit)

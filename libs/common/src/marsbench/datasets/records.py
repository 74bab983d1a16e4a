"""What every reader yields: records to embed, and a log of what it had to skip.

Readers stream; they never hold a dataset in memory. A record that cannot be used is never
dropped silently: it goes to the `SkipLog` with its key and the reason.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One image to embed and store.

    `key` is unique and stable within its dataset; the vector store derives the point id from
    it, so re-indexing the same data is idempotent. `payload` is stored beside the vector as is.
    `unit` names the resumable unit the record belongs to; the indexer marks a unit finished
    once the reader has passed its end and every one of its records is written.
    """

    key: str
    image: bytes
    payload: dict[str, Any]
    # The resumable unit (e.g. shard file) the record came from, for readers that have units.
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class SkippedItem:
    key: str
    reason: str


@dataclass
class SkipLog:
    """Counts every skipped item; keeps the first `keep` of them with their reasons.

    Thread-safe: a reader and several pipeline workers report into one log.
    """

    keep: int = 1000
    count: int = 0
    items: list[SkippedItem] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    _keys: set[str] = field(default_factory=set, repr=False, compare=False)

    def add(self, key: str, reason: str) -> None:
        """Record a skip; the same key reported again (a re-read after a restart) counts once."""
        with self._lock:
            if key in self._keys:
                return
            self._keys.add(key)
            self.count += 1
            if len(self.items) < self.keep:
                self.items.append(SkippedItem(key=key, reason=reason))

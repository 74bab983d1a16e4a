"""The streaming index pipeline: records in fixed-size batches → encoder → vector store.

Memory stays constant: at most `in_flight` batches exist at once. Points already in the
collection are skipped (their ids are deterministic), so a restarted job resumes where it
stopped and re-indexing is idempotent. An image the encoder cannot decode is skipped and
reported by key; the rest of its batch is sent again.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np

from marsbench.datasets.records import ImageRecord, SkipLog
from marsbench.indexer.core.ports import Embedder, ItemRejected
from marsbench.indexer.core.units import UnitTracker
from marsbench.store import Point, VectorStore, point_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineTarget:
    """Where and how records are written: their image vector, and for paired data a text vector
    embedded from the payload field `text_field` (e.g. the caption)."""

    collection: str
    vector: str
    model: str
    text_vector: str | None = None
    text_field: str | None = None


def batched(records: Iterable[ImageRecord], size: int) -> Iterator[list[ImageRecord]]:
    iterator = iter(records)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def embed_skipping_bad(
    embedder: Embedder, model: str, batch: list[ImageRecord], skips: SkipLog
) -> tuple[list[ImageRecord], np.ndarray]:
    """Embed a batch; an image the encoder rejects by index is skipped and the rest resent."""
    pending = list(batch)
    while pending:
        try:
            vectors = embedder.embed_images(model, [r.image for r in pending], [r.key for r in pending])
            return pending, vectors
        except ItemRejected as exc:
            # Without a usable index the whole call was refused: nothing to skip, the job fails.
            if exc.index is None or not 0 <= exc.index < len(pending):
                raise
            bad = pending.pop(exc.index)
            skips.add(bad.key, exc.reason)
            log.warning("skipped %s: %s", bad.key, exc.reason)
    return [], np.zeros((0, 0), dtype=np.float32)


class IndexPipeline:
    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        target: PipelineTarget,
        *,
        batch_size: int,
        in_flight: int,
        skips: SkipLog,
        on_progress: Callable[[int], None],
        cancelled: threading.Event | None = None,
        units: UnitTracker | None = None,
        before_write: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._target = target
        self._batch_size = batch_size
        self._in_flight = in_flight
        self._skips = skips
        self._on_progress = on_progress
        self._cancelled = cancelled or threading.Event()  # the owner's: shutdown
        # This run's own: a failed batch stops the others. Never set the owner's event, which other
        # jobs (and this job's retries) share.
        self._failed = threading.Event()
        self._units = units
        # Called before each write, e.g. the free-space check: it raises to stop the run there.
        self._before_write = before_write
        # Units the reader has passed the end of, applied only once their records are submitted.
        self._read_units: list[str] = []

    def run(self, records: Iterable[ImageRecord]) -> None:
        with ThreadPoolExecutor(self._in_flight, thread_name_prefix="index") as pool:
            running: set[Future[None]] = set()
            try:
                for batch in batched(records, self._batch_size):
                    if self._stopping():
                        self._read_units.clear()  # this batch is never written: its units stay open
                        break
                    if len(running) >= self._in_flight:
                        finished, running = _wait_one(running)
                        _raise_first(finished)
                    if self._units is not None:
                        self._units.submitted(record.unit for record in batch)
                    # A copy per batch (one context cannot run on two threads at once): the job's
                    # request id then reaches the encoder from the pool's threads too.
                    running.add(pool.submit(contextvars.copy_context().run, self._process, batch))
                    self._flush_read_units()
                finished, _ = wait(running)
                _raise_first(finished)
                self._flush_read_units()
            except BaseException:
                self._failed.set()
                raise

    def unit_read(self, unit: str) -> None:
        """The reader's callback after a unit's last record; fires while the next batch is built."""
        self._read_units.append(unit)

    def _flush_read_units(self) -> None:
        # Every record of these units is in a submitted batch by now (the reader signals a unit
        # while the batch holding its last record, or the one after, is being assembled).
        if self._units is not None:
            for unit in self._read_units:
                self._units.read_to_end(unit)
        self._read_units.clear()

    def _stopping(self) -> bool:
        return self._cancelled.is_set() or self._failed.is_set()

    def _process(self, batch: list[ImageRecord]) -> None:
        if self._stopping():
            return
        ids = [point_id(record.key) for record in batch]
        present = {p.id for p in self._store.retrieve(self._target.collection, ids)}
        todo = [record for record, pid in zip(batch, ids, strict=True) if pid not in present]
        written = 0
        if todo:
            kept, vectors = embed_skipping_bad(self._embedder, self._target.model, todo, self._skips)
            named = [{self._target.vector: v} for v in vectors]
            if kept and self._target.text_vector and self._target.text_field:
                texts = [str(r.payload[self._target.text_field]) for r in kept]
                for entry, text_vector in zip(
                    named, self._embedder.embed_texts(self._target.model, texts), strict=True
                ):
                    entry[self._target.text_vector] = text_vector
            points = [
                Point(id=point_id(r.key), vectors=v, payload=r.payload)
                for r, v in zip(kept, named, strict=True)
            ]
            if points:
                if self._before_write is not None:
                    self._before_write()
                self._store.upsert(self._target.collection, points)
            written = len(points)
        self._on_progress(written)
        if self._units is not None:  # skipped records count as processed: retrying them is futile
            self._units.processed(record.unit for record in batch)


def _wait_one(running: set[Future[None]]) -> tuple[set[Future[None]], set[Future[None]]]:
    done, pending = wait(running, return_when=FIRST_COMPLETED)
    return done, pending


def _raise_first(finished: set[Future[None]]) -> None:
    for future in finished:
        future.result()

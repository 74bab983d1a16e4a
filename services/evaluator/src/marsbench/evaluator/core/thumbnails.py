"""Thumbnails of stored points, read from the dataset their collection was indexed from.

The store keeps vectors and payloads, not images. A point's image is found again through its
collection's latest indexing job (task, dataset folder, options) and the task's reader, which
looks the payload up (`read_image`). The dataset folder is handed to `confine` first (the
service's dataset roots), so no request reads outside them, whatever a job recorded; the reader is
opened with the same roots, so a link inside the folder that leads out of them is refused too
(`OutsideRoots`, answered as an unavailable image naming the link and its target).

Three small caches keep an interactive page cheap: the job per collection for a few seconds (a
page asks for dozens of thumbnails at once), opened datasets (opening one scans its folders), and
the thumbnails themselves, bounded by count.
"""

from __future__ import annotations

import io
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from PIL import Image

from marsbench.datasets.errors import DatasetError
from marsbench.datasets.lookup import ItemNotFound
from marsbench.evaluator.core.collections import NO_INDEXER
from marsbench.evaluator.core.errors import ImageUnavailable, PointNotFound
from marsbench.evaluator.core.ports import ImageReader, IndexingJobs, UpstreamError
from marsbench.job_order import current_job
from marsbench.schemas.jobs import JobStatus
from marsbench.store import CollectionNotFound, VectorStore
from marsbench.tasks import INDEXABLE

JPEG_QUALITY = 85
THUMBNAILS_KEPT = 512  # ~10 kB each at 192 px: a few MB
DATASETS_KEPT = 8
JOB_TTL_S = 10.0  # a re-indexed collection's thumbnails follow its new job after this long

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Confine = Callable[[str], Path]
DatasetOpener = Callable[[str, Path, Mapping[str, str]], object]


class BoundedCache(Generic[K, V]):
    """A least-recently-used map bounded by entry count; safe across request threads."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def make_thumbnail(data: bytes, size: int) -> bytes:
    """A JPEG no larger than `size` on either side (aspect kept, never enlarged).

    Raises ImageUnavailable for bytes Pillow cannot decode (or a decompression bomb)."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.draft(None, (size, size))  # JPEG sources decode at a reduced scale: much faster
            image = opened if opened.mode in ("RGB", "L") else opened.convert("RGB")
            image.thumbnail((size, size))
            out = io.BytesIO()
            image.save(out, format="JPEG", quality=JPEG_QUALITY)
    except Exception as exc:  # Pillow signals bad data with many types (OSError, SyntaxError, ...)
        raise ImageUnavailable(f"the stored image cannot be decoded ({type(exc).__name__}: {exc})") from exc
    return out.getvalue()


def open_dataset(task: str, folder: Path, options: Mapping[str, str], roots: Sequence[Path] = ()) -> object:
    """The task's reader over `folder`, as the indexer opened it (refusing links out of `roots`)."""
    return INDEXABLE[task].open(folder, options, roots=roots)


class PointImages:
    def __init__(
        self,
        store: VectorStore,
        indexing: IndexingJobs | None,
        *,
        opener: DatasetOpener | None = None,
        thumbnails_kept: int = THUMBNAILS_KEPT,
        datasets_kept: int = DATASETS_KEPT,
        job_ttl_s: float = JOB_TTL_S,
        dataset_roots: Sequence[Path] = (),
    ) -> None:
        self._store = store
        self._indexing = indexing
        self._roots = tuple(dataset_roots)
        # The default opener refuses links out of the dataset roots; an injected one decides itself.
        self._opener = opener or (
            lambda task, folder, options: open_dataset(task, folder, options, self._roots)
        )
        self._thumbnails: BoundedCache[tuple[str, str, int], bytes] = BoundedCache(thumbnails_kept)
        self._datasets: BoundedCache[tuple[str, str, tuple[tuple[str, str], ...]], object] = BoundedCache(
            datasets_kept
        )
        self._jobs: BoundedCache[str, tuple[float, JobStatus]] = BoundedCache(64)
        self._job_ttl_s = job_ttl_s

    def thumbnail(self, collection: str, point_id: str, size: int, confine: Confine) -> bytes:
        """The JPEG thumbnail of one point (see the module docs for where it comes from)."""
        key = (collection, point_id, size)
        cached = self._thumbnails.get(key)
        if cached is not None:
            return cached
        payload = self._payload(collection, point_id)
        reader = self._reader(collection, confine)
        try:
            data = reader.read_image(payload)
        except ItemNotFound as exc:
            raise PointNotFound(f"the dataset holds no image for point {point_id}: {exc}") from exc
        except (DatasetError, OSError) as exc:
            raise ImageUnavailable(f"cannot read the image of point {point_id}: {exc}") from exc
        thumbnail = make_thumbnail(data, size)
        self._thumbnails.put(key, thumbnail)
        return thumbnail

    def _payload(self, collection: str, point_id: str) -> dict[str, object]:
        try:
            points = self._store.retrieve(collection, [point_id])
        except CollectionNotFound:
            raise PointNotFound(f"no collection {collection!r}; GET /v1/collections lists them") from None
        if not points:
            raise PointNotFound(f"no point {point_id} in collection {collection!r}")
        return points[0].payload

    def _reader(self, collection: str, confine: Confine) -> ImageReader:
        job = self._job(collection)
        folder = confine(job.dataset_dir)  # PathNotAllowed (403) outside the dataset roots
        options = tuple(sorted(job.dataset_options.items()))
        key = (job.task.value, str(folder), options)
        reader = self._datasets.get(key)
        if reader is None:
            try:
                reader = self._opener(job.task.value, folder, dict(options))
            except (DatasetError, OSError, ValueError) as exc:
                raise ImageUnavailable(
                    f"cannot open the dataset {job.dataset_dir} collection {collection!r} was indexed "
                    f"from: {exc}"
                ) from exc
            self._datasets.put(key, reader)
        if not isinstance(reader, ImageReader):
            raise ImageUnavailable(f"the {job.task.value} reader cannot look images up by payload")
        return reader

    def job(self, collection: str) -> JobStatus:
        """The collection's current indexing job (ImageUnavailable when none is known): where its
        dataset lies, for the search page's basemap and ground-truth sites too."""
        return self._job(collection)

    def _job(self, collection: str) -> JobStatus:
        """The collection's latest indexing job, kept for `job_ttl_s`."""
        now = time.monotonic()
        cached = self._jobs.get(collection)
        if cached is not None and cached[0] > now:
            return cached[1]
        if self._indexing is None:
            raise ImageUnavailable(f"no image source for {collection!r}: {NO_INDEXER}")
        try:
            jobs = self._indexing.jobs(collection)
        except UpstreamError as exc:
            raise ImageUnavailable(
                f"the indexer did not answer ({exc}): the dataset of {collection!r} is unknown"
            ) from exc
        if not jobs:
            raise ImageUnavailable(
                f"no indexing job of this evaluator's indexer wrote {collection!r}: its dataset is unknown"
            )
        job = current_job(jobs) or jobs[-1]  # the indexer's rule for a collection's current job
        self._jobs.put(collection, (now + self._job_ttl_s, job))
        return job

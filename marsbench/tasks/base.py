"""The shape every task shares on the indexing side."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Protocol

from marsbench.datasets.records import ImageRecord, SkipLog
from marsbench.store.base import CollectionSpec


class ImageSource(Protocol):
    """A dataset as the indexer sees it: a stream of image records."""

    def count(self) -> int: ...

    def fingerprint(self) -> str: ...

    def iter_records(
        self,
        skips: SkipLog,
        *,
        skip_units: Collection[str] = (),
        on_unit_done: Callable[[str], None] | None = None,
    ) -> Iterator[ImageRecord]:
        """Records in a stable order. Readers with resumable units (shards) skip `skip_units`
        and call `on_unit_done(unit)` once a unit's last record has been yielded."""
        ...


class IndexableTask(Protocol):
    name: str
    image_vector: str
    # Paired data also stores a text vector, embedded from this payload field.
    text_vector: str | None
    text_field: str | None

    def open(self, dataset_dir: Path) -> ImageSource: ...

    def collection_name(self, model: str, source: ImageSource) -> str: ...

    def collection_spec(self, name: str, dimension: int) -> CollectionSpec: ...

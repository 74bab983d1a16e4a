"""What every task shares on the indexing side: an image source and how its collection looks.

Tasks differ by data, not by code: `IndexedTask` holds a task's name, how to open its published
dataset, its payload indexes and, for paired data, the text vector stored beside the image one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from marsbench.datasets.records import ImageRecord, SkipLog
from marsbench.store.base import CollectionSpec, PayloadIndex
from marsbench.store.naming import collection_name


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


@dataclass(frozen=True)
class IndexedTask:
    name: str
    opener: Callable[..., ImageSource]
    payload_indexes: Mapping[str, PayloadIndex] = field(default_factory=dict)
    image_vector: str = "image"
    # Paired data also stores a text vector, embedded from this payload field.
    text_vector: str | None = None
    text_field: str | None = None

    # Dataset options this task accepts (e.g. the paired task's caption key); they select a data
    # variant, so they take part in the collection name through the source's fingerprint.
    options: tuple[str, ...] = ()

    def open(
        self, dataset_dir: Path, options: Mapping[str, str] | None = None, *, roots: Sequence[Path] = ()
    ) -> ImageSource:
        """The task's reader over `dataset_dir`; it refuses links out of `roots` (the dataset roots,
        empty: no boundary), see marsbench.datasets.confine."""
        given = {k: v for k, v in (options or {}).items() if v is not None}
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            raise ValueError(f"task {self.name!r} takes no option {', '.join(unknown)}")
        return self.opener(dataset_dir, roots=tuple(roots), **given)

    def collection_name(self, model: str, source: ImageSource) -> str:
        """One collection per (task, model, data variant): the data's fingerprint names the variant."""
        return collection_name(self.name, model, source.fingerprint())

    def collection_spec(self, name: str, dimension: int) -> CollectionSpec:
        vectors = {self.image_vector: dimension}
        if self.text_vector is not None:
            vectors[self.text_vector] = dimension
        return CollectionSpec(name=name, vectors=vectors, payload_indexes=dict(self.payload_indexes))

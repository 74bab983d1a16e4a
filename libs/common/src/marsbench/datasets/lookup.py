"""Finding one stored item's image again, from its payload: what thumbnails need from the readers.

Each reader's `read_image(payload)` answers with the encoded bytes the indexer embedded for that
payload, or raises `ItemNotFound`. Readers keep an index per file (tar members by name, parquet rows
by image name) so a lookup does not walk the data; the indexes are cached under a `FileStamp`, so a
file rewritten in place is indexed again rather than read at stale offsets.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple


class ItemNotFound(LookupError):
    """The dataset holds no item for this payload (or the payload names none); says which."""


class FileStamp(NamedTuple):
    """A file as a cache key: its path, modification time and size."""

    path: str
    mtime_ns: int
    size: int


def file_stamp(path: Path) -> FileStamp:
    """The stamp of `path`; ItemNotFound when it is gone."""
    try:
        stat = path.stat()
    except FileNotFoundError as exc:
        raise ItemNotFound(f"{path} no longer exists") from exc
    return FileStamp(str(path), stat.st_mtime_ns, stat.st_size)


def payload_text(payload: Mapping[str, Any], field: str) -> str:
    """A text field of a stored payload; ItemNotFound when it is missing or not text."""
    value = payload.get(field)
    if not isinstance(value, str) or not value:
        raise ItemNotFound(f"the point's payload has no {field!r} text field")
    return value


def is_plain_name(name: str) -> bool:
    """A single file name: no folder part, not `.` or `..` (so it cannot lead out of a folder)."""
    return name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name

"""Stable names for collections and points.

Collection names double as directory names in the embedded store, so they use only
``[a-z0-9_-]``. Point ids are UUID5s of a dataset-level key, so re-indexing the same item
overwrites its point instead of adding a second one.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid

# Fixed forever: changing it would give every point of every existing collection a new id.
POINT_NAMESPACE = uuid.UUID("3b53daad-5d86-408f-bb44-314e2cb8f79c")

# Parts are joined with "__" and never contain it themselves, so a name splits unambiguously.
_SEPARATOR = "__"
_MAX_LENGTH = 63
_HASH_LENGTH = 8
_UNSAFE = re.compile(r"[^a-z0-9_-]+")
_UNDERSCORES = re.compile(r"_{2,}")


def collection_name(task: str, model: str, variant: str) -> str:
    """A readable collection name for one (task, model, data variant) triple.

    Case is folded (names are case-insensitive). When sanitising changes anything else, or the
    name would exceed 63 characters, a short hash of the raw triple keeps names distinct.
    """
    raw = (task, model, variant)
    if not all(part.strip() for part in raw):
        raise ValueError(f"task, model and variant must be non-empty, got {raw!r}")
    parts = [_sanitise(part) for part in raw]
    name = _SEPARATOR.join(parts)
    lossy = any(clean != part.lower() for clean, part in zip(parts, raw, strict=True))
    if not lossy and len(name) <= _MAX_LENGTH:
        return name
    suffix = _digest(raw)
    head = name[: _MAX_LENGTH - _HASH_LENGTH - 1].rstrip("_-")
    return f"{head}-{suffix}"


def point_id(key: str) -> str:
    """The point id (a UUID string) of the item with this dataset-level key."""
    return str(uuid.uuid5(POINT_NAMESPACE, key))


def _sanitise(part: str) -> str:
    clean = _UNSAFE.sub("-", part.lower())
    clean = _UNDERSCORES.sub("_", clean).strip("_-")
    return clean or "x"


def _digest(raw: tuple[str, str, str]) -> str:
    # JSON keeps the parts apart, so ("a_b", "c") and ("a", "b_c") hash differently.
    encoded = json.dumps(raw, ensure_ascii=False).encode()
    return hashlib.sha256(encoded).hexdigest()[:_HASH_LENGTH]

"""Small file helpers shared by the services."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename: a crash never leaves a half-written file.

    The temporary name is per process and thread, so that two threads saving the same file at once
    (an indexing job's progress and its finished shards) each rename their own; the last one wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


_HASH_CHUNK = 8 << 20  # bounded memory for multi-GB checkpoints


def file_sha256(path: Path) -> str:
    """The file's sha256 hex digest, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()

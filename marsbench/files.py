"""Small file helpers shared by the services."""

from __future__ import annotations

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

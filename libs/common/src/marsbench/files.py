"""Small file helpers shared by the services: atomic writes, free-space checks, checksums."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import threading
from pathlib import Path

# errno values that mean "the disk (or the user's quota) is full".
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_MB = 1 << 20


class DiskFull(OSError):
    """Too little free space to write safely; the message names the folder, what is free and the setting.

    An `OSError` (ENOSPC), so code that handles I/O errors handles it too; the services answer 507."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOSPC, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, DiskFull) or (isinstance(exc, OSError) and exc.errno in _NO_SPACE)


def free_mb(path: Path) -> float:
    """Free megabytes on the file system holding `path` (its nearest existing parent)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free / _MB


def check_free_space(path: Path, min_free_mb: int, *, what: str) -> None:
    """Raise `DiskFull` when less than `min_free_mb` is free where `path` lives (0 disables the check).

    Checked before writing rather than relying on ENOSPC: the embedded Qdrant engine writes through
    memory-mapped files, and a page that cannot be allocated kills the process with SIGBUS."""
    if min_free_mb <= 0:
        return
    free = free_mb(path)
    if free < min_free_mb:
        raise DiskFull(
            f"only {free:.0f} MB free on the disk holding {path}, below MARSBENCH_MIN_FREE_DISK_MB="
            f"{min_free_mb}: {what} stopped before writing. Free some space (or lower the setting), then "
            "continue"
        )


def no_space_message(path: Path, exc: OSError) -> str:
    return f"no space left on the disk holding {path.parent} while writing {path.name} ({exc.strerror})"


def write_text_atomic(path: Path, text: str) -> None:
    """`write_bytes_atomic` of the UTF-8 text."""
    write_bytes_atomic(path, text.encode())


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file, fsync and rename: readers see the old file or the new one, never a
    half-written or empty one (a crash or a full disk included). The temporary file is removed on
    any error; a full disk raises `DiskFull` naming the file.

    The temporary name is per process and thread, so that two threads saving the same file at once
    (an indexing job's progress and its finished shards) each rename their own; the last one wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:  # os.write may write less than asked
                view = view[os.write(fd, view) :]
            # Data on disk before the rename: otherwise a crash can leave the new name with 0 bytes.
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and is_disk_full(exc) and not isinstance(exc, DiskFull):
            raise DiskFull(no_space_message(path, exc)) from exc
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # The rename itself is durable once the folder is synced; not every file system allows it.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_HASH_CHUNK = 8 << 20  # bounded memory for multi-GB checkpoints


def file_sha256(path: Path) -> str:
    """The file's sha256 hex digest, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()

"""The paired download's files: complete shards, the staging folder of shards in progress.

A shard `NNNNNN.tar` only ever appears whole: it is written as `.NNNNNN.tar.tmp` beside it, synced
and renamed. Until then its samples wait in `.partial/NNNNNN/` as `<key>.jpg` and `<key>.json`,
each written the same way, the JSON last, so a sample is staged exactly when its JSON exists. A
killed download therefore loses at most the images it was fetching; the next run finds every
staged sample and every sample of the complete shards and fetches only the rest.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import time
from collections.abc import Iterable
from pathlib import Path

from marsbench.datasets.paired import IMAGE_EXTENSIONS, JSON_EXTENSION, split_part_name
from marsbench.datasets.tar_shards import scan_tar_members
from marsbench.files import write_bytes_atomic

STAGING = ".partial"
IMAGE_EXT = ".jpg"


def shard_name(index: int) -> str:
    return f"{index:06d}.tar"


def staging_dir(out: Path, shard: str) -> Path:
    return out / STAGING / shard.removesuffix(".tar")


def shard_keys(path: Path) -> set[str] | None:
    """Keys that have both an image and a JSON member in a complete shard; None if it is damaged."""
    listing = scan_tar_members(path)
    if listing.problem is not None:
        return None
    images: set[str] = set()
    jsons: set[str] = set()
    for name, size in listing.members:
        key, ext = split_part_name(name)
        if ext in IMAGE_EXTENSIONS and size > 0:
            images.add(key)
        elif ext == JSON_EXTENSION:
            jsons.add(key)
    return images & jsons


def staged_keys(folder: Path) -> set[str]:
    """Samples staged in a shard's staging folder (JSON present, image beside it)."""
    if not folder.is_dir():
        return set()
    return {
        p.stem
        for p in folder.iterdir()
        if p.suffix == JSON_EXTENSION and (folder / f"{p.stem}{IMAGE_EXT}").is_file()
    }


def stage_sample(folder: Path, key: str, image: bytes, meta: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(folder / f"{key}{IMAGE_EXT}", image)
    write_bytes_atomic(folder / f"{key}{JSON_EXTENSION}", meta)


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(mtime)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def assemble_shard(out: Path, shard: str, order: Iterable[str]) -> int:
    """Writes `shard` from its present samples plus its staged ones (staged keys in `order`).

    Samples of the existing shard are kept as they are (a staged copy of one is ignored, which a
    run killed between the rename and the clean-up leaves behind). Returns the samples added;
    when there are none the shard is left untouched. The staging folder is removed afterwards.
    """
    path = out / shard
    folder = staging_dir(out, shard)
    existing = shard_keys(path) if path.is_file() else set()
    staged = staged_keys(folder)
    new = [key for key in order if key in staged and key not in (existing or set())]
    if new:
        temp = out / f".{shard}.tmp"
        now = time.time()
        with temp.open("wb") as raw:
            with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
                if existing:
                    with tarfile.open(path, "r:") as old:
                        for member in old:
                            extracted = old.extractfile(member) if member.isfile() else None
                            if extracted is not None:
                                tar.addfile(member, extracted)
                for key in new:
                    _add(tar, f"{key}{IMAGE_EXT}", (folder / f"{key}{IMAGE_EXT}").read_bytes(), now)
                    _add(tar, f"{key}{JSON_EXTENSION}", (folder / f"{key}{JSON_EXTENSION}").read_bytes(), now)
            raw.flush()
            os.fsync(raw.fileno())
        temp.replace(path)
    shutil.rmtree(folder, ignore_errors=True)
    return len(new)


def clean_staging(out: Path) -> None:
    """Removes the staging root once it is empty (nothing is left in progress)."""
    root = out / STAGING
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()

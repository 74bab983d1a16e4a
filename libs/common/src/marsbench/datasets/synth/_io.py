"""Byte-reproducible writers (PNG, JPEG, WebDataset tar, HF parquet) and atomic publishing.

Every writer pins what would otherwise vary between runs (tar timestamps and owners, member
order, JSON key order), so the same seed gives the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

# 2000-01-01T00:00:00Z: a fixed, plausible mtime for every tar member.
_TAR_MTIME = 946684800

HF_IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def encode_png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def encode_jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_tar(path: Path, members: Iterable[tuple[str, bytes]]) -> int:
    """Write `members` (name, bytes) in the given order; returns how many were written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = _TAR_MTIME
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
            count += 1
    return count


def shard_name(index: int) -> str:
    """WebDataset shard names as the published sets use them: 000000.tar, 000001.tar, ..."""
    return f"{index:06d}.tar"


def chunks(n_items: int, per_chunk: int) -> list[range]:
    return [range(start, min(start + per_chunk, n_items)) for start in range(0, n_items, per_chunk)]


def hf_features_metadata(class_names: Sequence[str]) -> bytes:
    """The `huggingface` schema metadata that `datasets` writes for image/label/id columns."""
    features: dict[str, Any] = {
        "image": {"_type": "Image"},
        "label": {"names": list(class_names), "_type": "ClassLabel"},
        "image_id": {"dtype": "string", "_type": "Value"},
    }
    return json.dumps({"info": {"features": features}}).encode("utf-8")


def write_hf_parquet(path: Path, rows: Sequence[tuple[str, int, bytes]], class_names: Sequence[str]) -> None:
    """One parquet shard in the Hugging Face `datasets` layout from (image_id, label, png) rows."""
    images = pa.array(
        [{"bytes": png, "path": f"{image_id}.png"} for image_id, _, png in rows], type=HF_IMAGE_TYPE
    )
    labels = pa.array([label for _, label, _ in rows], type=pa.int64())
    ids = pa.array([image_id for image_id, _, _ in rows], type=pa.string())
    schema = pa.schema(
        [("image", HF_IMAGE_TYPE), ("label", pa.int64()), ("image_id", pa.string())],
        metadata={b"huggingface": hf_features_metadata(class_names)},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_arrays([images, labels, ids], schema=schema), path)


def file_digests(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, keyed by its POSIX path relative to `root`, sorted."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def publish(staged: Path, final: Path, trash: Path) -> None:
    """Move a complete `staged` folder to `final`, replacing what was there.

    Each step is a rename on one file system, so `final` is at any moment either the old
    complete folder, absent, or the new complete folder; never a half-written one.
    """
    if final.exists():
        final.replace(trash)
    staged.replace(final)
    if trash.exists():
        shutil.rmtree(trash)

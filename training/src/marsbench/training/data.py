"""Training pairs from paired WebDataset shards, and the held-out split written as its own dataset.

Samples are read with the project's paired reader (`marsbench.datasets.paired.PairedDataset`), so
training sees exactly the pairs the benchmark would index: same pairing rules, same skips. A sample
is held out when a hash of its key alone falls below the split fraction, so the split does not
depend on shard order, on the seed, or on which other samples exist. The held-out samples are
written as WebDataset shards into a folder of their own, which the benchmark then evaluates: only
pairs the model never trained on.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from marsbench.datasets.confine import RootsArg
from marsbench.datasets.paired import PairedDataset
from marsbench.datasets.records import SkipLog

SPLIT_RULE = "held out when int(sha256(key)[:16], 16) / 2**64 < fraction"
PAIRS_PER_SHARD = 1000
_TAR_MTIME = 946684800  # fixed member times: the same split gives the same bytes


@dataclass(frozen=True, slots=True)
class Pair:
    key: str
    image: bytes
    caption: str


@dataclass(frozen=True, slots=True)
class PairedData:
    train: list[Pair]
    heldout: list[Pair]
    fingerprint: str
    skipped: int


def key_fraction(key: str) -> float:
    """A number in [0, 1) fixed by the key alone."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:16], 16) / 2**64


def is_heldout(key: str, fraction: float) -> bool:
    return key_fraction(key) < fraction


def read_pairs(data_dir: Path, caption_key: str, eval_split: float, *, roots: RootsArg = None) -> PairedData:
    """Every usable pair of the folder, split into training and held-out samples. With `roots`, a
    shard linking out of them is skipped (and counted), as the services' readers do."""
    dataset = PairedDataset(data_dir, caption_key, roots=roots)
    skips = SkipLog()
    train: list[Pair] = []
    heldout: list[Pair] = []
    for record in dataset.iter_records(skips):
        pair = Pair(record.key, record.image, str(record.payload["caption"]))
        (heldout if is_heldout(record.key, eval_split) else train).append(pair)
    return PairedData(train, heldout, dataset.fingerprint(), skips.count)


def keys_sha256(pairs: Iterable[Pair]) -> str:
    digest = hashlib.sha256()
    for key in sorted(p.key for p in pairs):
        digest.update(key.encode("utf-8") + b"\n")
    return digest.hexdigest()


def image_extension(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "png"
    return "jpg"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), _TAR_MTIME, 0o644
    tar.addfile(info, io.BytesIO(data))


def write_paired_shards(out: Path, pairs: Sequence[Pair], caption_key: str) -> Path:
    """`out/000000.tar, ...` in img2dataset's layout (`<key>.<img>` then `<key>.json`), replacing
    whatever was there; written in a staging folder and renamed into place."""
    out = Path(out)
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for shard, start in enumerate(range(0, max(len(pairs), 1), PAIRS_PER_SHARD)):
        with tarfile.open(staging / f"{shard:06d}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for pair in pairs[start : start + PAIRS_PER_SHARD]:
                _add(tar, f"{pair.key}.{image_extension(pair.image)}", pair.image)
                meta = {"key": pair.key, caption_key: pair.caption}
                _add(tar, f"{pair.key}.json", json.dumps(meta, sort_keys=True).encode("utf-8"))
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out


def shard_fingerprint(folder: Path, caption_key: str) -> str:
    return PairedDataset(folder, caption_key).fingerprint()

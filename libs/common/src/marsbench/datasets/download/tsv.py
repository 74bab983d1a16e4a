"""`mars_vl_pairs.tsv`: written from the hub's Mars-VL-Pairs rows, read back for the image download.

Writing follows the reference's `hf2tsv.py`: columns `url, ori_caption, refined_caption, key`, the
URL from the rows' `image_url` field, rows without a URL or either caption left out. The reference
loads the rows with `datasets.load_dataset(split="train")`; marsbench does not depend on
`datasets`, so it reads the snapshot's data files itself (parquet, JSON lines, JSON, CSV/TSV) and
takes the `train` split's files by the hub's naming rules (a file or folder named `train...`; every
file when none is named after a split).
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from marsbench.datasets.errors import DatasetError

TSV_COLUMNS = ("url", "ori_caption", "refined_caption", "key")
DATA_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv", ".tsv")
_SPLIT_NAME = re.compile(r"^(train|test|validation|valid|dev)(?:$|[-._ 0-9])", re.IGNORECASE)
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


class PairRow(BaseModel):
    """One TSV row, as the downloader uses it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    ori_caption: str
    refined_caption: str
    key: str  # the TSV's own key column ("" when absent)


def _split_of(relative: Path) -> str | None:
    for part in reversed(relative.parts):
        match = _SPLIT_NAME.match(part)
        if match:
            return match.group(1).lower()
    return None


def data_files(snapshot: Path, split: str = "train") -> list[Path]:
    """The snapshot's data files of `split` in name order (module docs)."""
    files = sorted(
        p
        for p in snapshot.rglob("*")
        if p.is_file()
        and p.suffix.lower() in DATA_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(snapshot).parts)
    )
    named = {p: _split_of(p.relative_to(snapshot)) for p in files}
    if any(name is not None for name in named.values()):
        files = [p for p in files if named[p] == split]
    return files


def _rows_of(path: Path) -> Iterator[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        columns = [
            c
            for c in ("image_url", "url", "ori_caption", "refined_caption", "key")
            if c in table.schema.names
        ]
        yield from table.select(columns).to_pylist()
    elif suffix == ".jsonl":
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)
    elif suffix == ".json":
        document = json.loads(path.read_text(encoding="utf-8"))
        yield from document if isinstance(document, list) else document.get("data", [])
    else:
        with path.open(encoding="utf-8", newline="") as handle:
            yield from csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",")


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ("" if value is None else str(value))


def rows_from_snapshot(snapshot: Path, split: str = "train") -> Iterator[PairRow]:
    """The pairs of a Mars-VL-Pairs snapshot that `hf2tsv.py` would keep, in file and row order."""
    files = data_files(snapshot, split)
    if not files:
        raise DatasetError(f"no data files ({', '.join(DATA_SUFFIXES)}) for split {split!r} in {snapshot}")
    for path in files:
        try:
            for row in _rows_of(path):
                if not isinstance(row, dict):
                    continue
                url = _text(row.get("image_url") or row.get("url"))
                ori, refined = _text(row.get("ori_caption")), _text(row.get("refined_caption"))
                if url and ori and refined:
                    yield PairRow(
                        url=url, ori_caption=ori, refined_caption=refined, key=_text(row.get("key"))
                    )
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot read the pairs file {path}: {exc}") from exc


def write_tsv(rows: Iterable[PairRow], path: Path) -> int:
    """Writes the TSV atomically (temp file, then rename); returns the number of rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    count = 0
    with temp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(TSV_COLUMNS)
        for row in rows:
            writer.writerow([row.url, row.ori_caption, row.refined_caption, row.key])
            count += 1
        handle.flush()
        os.fsync(handle.fileno())
    temp.replace(path)
    return count


def read_tsv(path: Path) -> list[PairRow]:
    """Every data row of a pairs TSV, in order (a row without URL is kept: it fails by key later)."""
    csv.field_size_limit(16 * 1024 * 1024)
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t")
            if reader.fieldnames is None or "url" not in reader.fieldnames:
                raise DatasetError(f"{path} has no 'url' column (expected columns {', '.join(TSV_COLUMNS)})")
            return [
                PairRow(
                    url=_text(row.get("url")),
                    ori_caption=_text(row.get("ori_caption")),
                    refined_caption=_text(row.get("refined_caption")),
                    key=_text(row.get("key")),
                )
                for row in reader
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc


def tsv_keys_usable(rows: list[PairRow]) -> bool:
    """Whether the TSV's `key` column can name the samples: present, unique and file-name safe."""
    keys = [row.key for row in rows]
    return bool(keys) and all(_SAFE_KEY.match(k) for k in keys) and len(set(keys)) == len(keys)


def positional_key(index: int, shard_size: int) -> str:
    """img2dataset's key for row `index`: shard number (6 digits) then the row within the shard."""
    shard, within = divmod(index, shard_size)
    return f"{shard:06d}{within:0{len(str(max(shard_size - 1, 1)))}d}"

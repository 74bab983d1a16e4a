"""The SUSTech datasets from the Hugging Face hub, at pinned revisions, into a dataset folder.

The reference downloads each with `snapshot_download(repo_id=..., repo_type="dataset",
local_dir=...)` (its `data_processing/*/download_hf_*.py`). Here the snapshot goes into the hub
cache first (`cache_dir`, default `$HF_HUB_CACHE`) and is then copied into the out folder:

- resumable twice over: `huggingface_hub` resumes interrupted files in its cache and skips the ones
  it has, and the copy skips files already in the out folder at their size (each copied file is
  written under a temporary name and renamed, so a killed copy leaves no half file);
- offline (`HF_HUB_OFFLINE=1` or `offline=True`), a snapshot already in the cache is used as is,
  which is also how the tests serve a fake hub;
- `download_source.json` in the out folder records the repo, the revision asked for and the commit
  the snapshot came from, so an unpinned download can be pinned afterwards.

`HUB_DATASETS` is the one table of repos and revisions. No revision has been verified against the
hub yet (this was written without network access), so every entry is unpinned: it follows `main`
and says so (`UNPINNED_WARNING`) until a verified commit hash is filled in. `revision=` overrides.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from marsbench.datasets.errors import DatasetError
from marsbench.files import write_text_atomic

SOURCE_NAME = "download_source.json"
UNPINNED_WARNING = "unpinned (main) until verified"
DEFAULT_REVISION = "main"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True, slots=True)
class HubDataset:
    """One published dataset repo. `revision`: a verified commit hash, None while unverified."""

    task: str
    repo_id: str
    revision: str | None
    script: str  # the reference script that downloads it

    @property
    def pinned(self) -> bool:
        return self.revision is not None and bool(_COMMIT.match(self.revision))


# The one place the revisions live. Replace None with the commit hash once it has been checked.
HUB_DATASETS: dict[str, HubDataset] = {
    "landform": HubDataset(
        "landform",
        "SUSTech/Mars-Landforms",
        None,
        "data_processing/landform_retrieval/download_hf_landforms.py",
    ),
    "geolocalization": HubDataset(
        "geolocalization",
        "SUSTech/Mars-Global-Geolocalization",
        None,
        "data_processing/geolocalization/download_hf_geolocalization.py",
    ),
    "paired": HubDataset(
        "paired", "SUSTech/Mars-VL-Pairs", None, "data_processing/paired_image_text_retrieval/hf2tsv.py"
    ),
}


class HubSource(BaseModel):
    """`download_source.json`: where an out folder's files came from."""

    model_config = ConfigDict(extra="forbid")

    repo_id: str
    repo_type: str = "dataset"
    revision: str
    commit: str
    pinned: bool


class HubDownloadResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    out: str
    source: HubSource
    files: int
    copied: int
    skipped: int
    bytes_copied: int
    warning: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    path: Path
    commit: str


def revision_for(dataset: HubDataset, override: str | None) -> tuple[str, str | None]:
    """(revision to ask for, warning or None): the override, the pin, else `main` with the warning."""
    if override:
        warning = (
            None if _COMMIT.match(override) else f"revision {override!r} is a branch or tag, not a commit"
        )
        return override, warning
    if dataset.revision:
        return dataset.revision, None
    return DEFAULT_REVISION, f"{dataset.repo_id}: {UNPINNED_WARNING}"


def fetch_snapshot(
    repo_id: str,
    revision: str,
    *,
    cache_dir: Path | None = None,
    offline: bool = False,
    endpoint: str | None = None,
    token: str | bool | None = None,
    max_workers: int = 8,
) -> Snapshot:
    """`snapshot_download` of a dataset repo into the hub cache; its folder and commit hash."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = snapshot_download(
            repo_id=repo_id,
            repo_type="dataset",
            revision=revision,
            cache_dir=str(cache_dir) if cache_dir else None,
            local_files_only=offline,
            endpoint=endpoint,
            token=token,
            max_workers=max_workers,
        )
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as exc:
        where = "in the hub cache (offline)" if offline else "on the hub or in its cache"
        raise DatasetError(f"cannot get {repo_id} at revision {revision!r} {where}: {exc}") from exc
    path = Path(folder)
    return Snapshot(path=path, commit=path.name)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and ".cache" not in p.relative_to(root).parts)


def copy_snapshot(snapshot: Path, out: Path) -> tuple[int, int, int, int]:
    """Copies the snapshot's files into `out`; (files, copied, skipped, bytes copied).

    A file already in `out` at the snapshot file's size is skipped (resuming a copy).
    """
    copied = skipped = size = 0
    files = _files(snapshot)
    for source in files:
        target = out / source.relative_to(snapshot)
        length = source.stat().st_size  # follows the cache's links to its blobs
        if target.is_file() and target.stat().st_size == length:
            skipped += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(source, temp)
        temp.replace(target)
        copied += 1
        size += length
    return len(files), copied, skipped, size


def download_hub_dataset(
    task: str,
    out: Path,
    *,
    revision: str | None = None,
    cache_dir: Path | None = None,
    offline: bool = False,
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> HubDownloadResult:
    """The task's repo at its revision (or `revision`) into `out`, recorded in `download_source.json`."""
    dataset = HUB_DATASETS.get(task)
    if dataset is None:
        raise DatasetError(f"no hub dataset for task {task!r} (known: {', '.join(HUB_DATASETS)})")
    asked, warning = revision_for(dataset, revision)
    snapshot = fetch_snapshot(
        dataset.repo_id, asked, cache_dir=cache_dir, offline=offline, endpoint=endpoint, token=token
    )
    out.mkdir(parents=True, exist_ok=True)
    files, copied, skipped, size = copy_snapshot(snapshot.path, out)
    source = HubSource(
        repo_id=dataset.repo_id, revision=asked, commit=snapshot.commit, pinned=bool(_COMMIT.match(asked))
    )
    write_source(out, source)
    return HubDownloadResult(
        out=str(out),
        source=source,
        files=files,
        copied=copied,
        skipped=skipped,
        bytes_copied=size,
        warning=warning,
    )


def write_source(out: Path, source: HubSource) -> None:
    write_text_atomic(out / SOURCE_NAME, source.model_dump_json(indent=2) + "\n")


def pairs_tsv_from_hub(
    out: Path,
    *,
    revision: str | None = None,
    cache_dir: Path | None = None,
    offline: bool = False,
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> tuple[Path, int, HubSource, str | None]:
    """Mars-VL-Pairs from the hub into `out/mars_vl_pairs.tsv` (hf2tsv.py): (path, rows, source, warning)."""
    from marsbench.datasets.download.tsv import rows_from_snapshot, write_tsv
    from marsbench.datasets.paired import TSV_NAME

    dataset = HUB_DATASETS["paired"]
    asked, warning = revision_for(dataset, revision)
    snapshot = fetch_snapshot(
        dataset.repo_id, asked, cache_dir=cache_dir, offline=offline, endpoint=endpoint, token=token
    )
    out.mkdir(parents=True, exist_ok=True)
    path = out / TSV_NAME
    rows = write_tsv(rows_from_snapshot(snapshot.path), path)
    source = HubSource(
        repo_id=dataset.repo_id, revision=asked, commit=snapshot.commit, pinned=bool(_COMMIT.match(asked))
    )
    write_source(out, source)
    return path, rows, source, warning

"""The facts a run record keeps so that the run can be reproduced (`RunRecord.provenance`).

What the evaluator can see for itself: its own software and host, the git checkout it runs from,
the dataset folder. What only the encoder knows (the weights' identity, its device and precision)
comes from the model card. The slow parts are cached per process (git, host) or bounded (the
dataset listing reads names and sizes, never contents; only small files are hashed).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from pathlib import Path

from marsbench.datasets.errors import DatasetError
from marsbench.datasets.geo import ground_truth_path, query_image_paths
from marsbench.files import file_sha256
from marsbench.schemas.jobs import JobState, TaskName
from marsbench.schemas.models import ModelInfo
from marsbench.schemas.provenance import (
    DatasetProvenance,
    HardwareProvenance,
    HostInfo,
    ModelProvenance,
    Provenance,
    SoftwareProvenance,
    Timings,
)
from marsbench.schemas.runs import RunCreate
from marsbench.version import __version__

# Distributions whose versions change numbers or behaviour: the array and model stack, the
# store's clients, the schemas and the service layer, the figures.
PACKAGES = (
    "numpy",
    "torch",
    "torchvision",
    "transformers",
    "open_clip_torch",
    "peft",
    "safetensors",
    "pillow",
    "pyarrow",
    "qdrant-client",
    "qdrant-edge-py",
    "pydantic",
    "fastapi",
    "matplotlib",
)
GIT_TIMEOUT_S = 5.0
GIB = 1024**3


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions from the distributions' metadata (nothing is imported); None if absent."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@cache
def software() -> SoftwareProvenance:
    """This process's Python, marsbench and package versions, and the source checkout's commit."""
    commit, dirty = git_state(Path(__file__).resolve().parent)
    return SoftwareProvenance(
        python=platform.python_version(),
        marsbench=__version__,
        packages=package_versions(),
        git_commit=commit,
        git_dirty=dirty,
    )


@cache
def git_state(folder: Path) -> tuple[str | None, bool | None]:
    """(HEAD, has uncommitted changes) of the git checkout that tracks `folder`'s files.

    None for both when `folder` is not tracked by a checkout (an installed package, even one
    inside a repository's ignored virtual environment), git is missing, or it does not answer in
    time. `dirty` is None when only the status could not be read."""
    if _git(folder, "ls-files", "--error-unmatch", "__init__.py") is None:
        return None, None
    commit = _git(folder, "rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = _git(folder, "status", "--porcelain")
    return commit, (bool(status) if status is not None else None)


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@cache
def host_info() -> HostInfo:
    """The evaluator's host: platform, CPU model, usable cores and physical memory."""
    try:
        cores: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count()
    return HostInfo(
        platform=platform.platform(),
        machine=platform.machine(),
        cpu=_cpu_model(),
        cores=cores,
        memory_gb=_memory_gb(),
    )


def _cpu_model() -> str | None:
    try:
        with Path("/proc/cpuinfo").open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1)
    except (AttributeError, ValueError, OSError):
        return None


def folder_size(root: Path) -> tuple[int, int]:
    """(regular files, total bytes) under `root`, leaving out hidden files and folders (such as
    the `.cache/` a hub download leaves). Names and sizes only: nothing is opened. Symlinked files
    count with their target's size; symlinked folders are not followed; unreadable entries are
    left out."""
    files = total = 0
    pending = [root]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                elif entry.is_file():
                    files += 1
                    total += entry.stat().st_size
            except OSError:
                continue
    return files, total


def model_provenance(reference: str, card: ModelInfo, indexing: Mapping[str, object]) -> ModelProvenance:
    """The model part, from the card the encoder gave at the end of the run and what the
    collection's indexing job recorded."""

    def indexed(key: str) -> str | None:
        value = indexing.get(key)
        return value if isinstance(value, str) else None

    return ModelProvenance(
        reference=reference,
        id=card.id,
        family=card.family,
        source=card.source,
        revision=card.revision,
        weights=card.weights,
        weights_sha256=card.weights_sha256 or {},
        indexed_weights=indexed("weights"),
        dimension=card.dimension,
        device=card.device,
        precision=card.precision,
        preprocessing=card.preprocessing,
        indexed_preprocessing=indexed("preprocessing"),
        indexed_precision=indexed("precision"),
    )


def build_provenance(
    request: RunCreate,
    card: ModelInfo,
    *,
    fingerprint: str,
    indexing: Mapping[str, object],
    query_images: Sequence[str] = (),
) -> Provenance:
    """The record's provenance, but for its timings (the caller fills them in last)."""
    dataset_dir = Path(request.dataset_dir).resolve()
    files, size = folder_size(dataset_dir)
    return Provenance(
        request=request.model_dump(mode="json"),
        model=model_provenance(request.model, card, indexing),
        dataset=DatasetProvenance(
            path=str(dataset_dir),
            options=request.dataset_options(),
            fingerprint=fingerprint,
            files=files,
            total_bytes=size,
            sha256=small_inputs(request, dataset_dir, query_images),
        ),
        software=software(),
        hardware=HardwareProvenance(evaluator=host_info(), encoder_device=card.device),
        timings=Timings(total_s=0.0),
    )


def small_inputs(request: RunCreate, dataset_dir: Path, query_images: Sequence[str]) -> dict[str, str]:
    """sha256 of the small files a run reads beside the collection, by path relative to
    `dataset_dir`: geo's ground truth and the query images it embedded. A file that cannot be read
    now is left out."""
    if request.task is not TaskName.GEOLOCALIZATION or not request.landform:
        return {}
    paths = [ground_truth_path(dataset_dir, request.landform)]
    if query_images:
        used = set(query_images)
        with contextlib.suppress(DatasetError):  # the folder went away: the names are in `settings`
            paths += [p for p in query_image_paths(dataset_dir, request.landform) if p.name in used]
    digests = {}
    for path in paths:
        try:
            digests[path.relative_to(dataset_dir).as_posix()] = file_sha256(path)
        except OSError:
            continue
    return digests


def indexing_seconds(indexing: Mapping[str, object]) -> float | None:
    """A succeeded indexing job's wall time, from its creation to its last update (as the record's
    `indexing` summary keeps them)."""
    created, updated = indexing.get("created_at"), indexing.get("updated_at")
    if indexing.get("state") != JobState.SUCCEEDED.value:
        return None
    if not isinstance(created, str) or not isinstance(updated, str):
        return None
    return (datetime.fromisoformat(updated) - datetime.fromisoformat(created)).total_seconds()


def weights_notes(task: TaskName, model: ModelProvenance) -> list[str]:
    """A note when a run's query vectors may come from other weights, another image preprocessing or
    another precision than the collection's (paired runs embed nothing: both sides come from the
    collection)."""
    if task is TaskName.PAIRED:
        return []
    notes = []
    if model.weights and model.indexed_weights and model.weights != model.indexed_weights:
        notes.append(
            f"the encoder's identity of the weights ({model.weights}) differs from the one the collection "
            f"was indexed with ({model.indexed_weights}): if the weights changed, queries and indexed "
            "vectors come from two models; re-index to be sure"
        )
    for what, now, then in (
        ("image preprocessing", model.preprocessing, model.indexed_preprocessing),
        ("precision", model.precision, model.indexed_precision),
    ):
        if now and then and now != then:
            notes.append(
                f"the queries ran with {what} {now!r} but the collection was indexed with {then!r}: "
                "re-index to compare like with like"
            )
    return notes

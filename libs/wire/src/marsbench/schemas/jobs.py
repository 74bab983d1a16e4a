"""Indexer wire schemas: `POST /v1/jobs`, `GET /v1/jobs/{id}`, `/v1/collections` (list, delete, snapshots)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from marsbench.schemas.common import MAX_REF_CHARS, DatasetDir, StrictModel


class TaskName(StrEnum):
    PAIRED = "paired"
    LANDFORM = "landform"
    GEOLOCALIZATION = "geolocalization"


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # on request, at a batch boundary; what it wrote is kept and it resumes


class JobCreate(StrictModel):
    task: TaskName
    model: str = Field(
        max_length=MAX_REF_CHARS,
        description="Model reference, e.g. 'marsbench-tiny' or 'open_clip:ViT-B-32@/ckpt.pt'.",
    )
    dataset_dir: DatasetDir = Field(
        description="The task's published `dataset/` folder, as the indexer sees it; under "
        "MARSBENCH_DATASET_ROOTS when set.",
    )
    # At most the encoder's MARSBENCH_ENCODER_MAX_ITEMS_PER_REQUEST ceiling (and Starlette's 1,000
    # files per multipart form): a larger batch could never be sent.
    batch_size: int | None = Field(default=None, ge=1, le=1000, description="Images per encoder request.")
    caption_key: str | None = Field(
        default=None,
        max_length=100,
        description="Paired task: the caption field to embed (default refined_caption).",
    )

    def dataset_options(self) -> dict[str, str]:
        return {"caption_key": self.caption_key} if self.caption_key else {}


class SkippedItemOut(BaseModel):
    key: str
    reason: str


class JobStatus(BaseModel):
    id: str
    task: TaskName
    model: str
    dataset_dir: str
    dataset_options: dict[str, str] = Field(default_factory=dict)
    collection: str
    state: JobState
    total: int | None = Field(description="Items the dataset holds, when known up front.")
    done: int = Field(description="Items in the collection (written by this job or already there).")
    skipped: int
    skipped_items: list[SkippedItemOut] = Field(default_factory=list)
    rate: float | None = Field(default=None, description="Items per second over this job's run.")
    eta_s: float | None = None
    error: str | None = Field(
        default=None,
        description="Why the job failed; while it runs, the last transient failure it is retrying after.",
    )
    attempts: int = Field(
        default=0,
        description="Runs of this job so far: the first, automatic retries after transient failures "
        "(encoder or Qdrant unreachable), restarts and resumes.",
    )
    weights: str | None = Field(default=None, description="The encoder's identity of the weights used.")
    preprocessing: str | None = Field(
        default=None,
        description="The encoder's image preprocessing for the model (its card's `preprocessing`).",
    )
    precision: str | None = Field(default=None, description="The encoder's forward precision for the model.")
    completed_units: list[str] = Field(
        default_factory=list, description="Shards (or folders) fully written; a resumed job skips them."
    )
    created_at: datetime
    updated_at: datetime


class JobList(BaseModel):
    data: list[JobStatus]


class CollectionOut(BaseModel):
    name: str
    vectors: dict[str, int]
    points: int
    task: str | None = None
    model: str | None = None
    dataset_dir: str | None = None
    complete: bool | None = Field(default=None, description="Whether its last indexing job succeeded.")


class CollectionList(BaseModel):
    data: list[CollectionOut]


# Collection names as the store allows them (marsbench.store.naming makes lower-case ones).
COLLECTION_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
# Snapshot file names in the data folder's snapshots/ (no separators: never a path).
SNAPSHOT_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,254}$"


class CollectionDeleted(BaseModel):
    name: str
    deleted: bool = True


class SnapshotOut(BaseModel):
    """A snapshot file written by `POST /v1/collections/{name}/snapshot`."""

    name: str = Field(description="The file's name in the snapshots folder; what an import asks for.")
    path: str = Field(description="Where it lies, as the indexer sees it (`<data dir>/snapshots/`).")
    size: int = Field(description="Bytes.")
    sha256: str
    collection: str
    points: int = Field(description="Points the collection held when it was taken.")
    backend: str = Field(description="'embedded' or 'server': a snapshot imports into the same kind.")
    created_at: datetime


class SnapshotImport(StrictModel):
    snapshot: str = Field(
        pattern=SNAPSHOT_NAME,
        description="A snapshot's name in the indexer's snapshots folder (never a path).",
    )
    collection: str | None = Field(
        default=None,
        pattern=COLLECTION_NAME,
        description="The collection to create (default: the one the snapshot was taken of); it must not "
        "exist.",
    )

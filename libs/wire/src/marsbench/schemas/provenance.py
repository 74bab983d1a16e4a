"""What reproduces a run: the `provenance` block of a run record (version 2 on).

Each part says where its facts come from; docs/run-records.md lists them with what is *not*
captured. The query settings and prompts stay in the record's `settings`, and the metric variant
in `variant` / `variants`: they are not repeated here.

Every model here keeps fields it does not know (`extra="allow"`), so that a record written by a
newer marsbench survives being read and re-saved by an older one (the CLI copies records).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class OpenModel(BaseModel):
    """A record part that keeps unknown (newer) fields instead of dropping them."""

    model_config = ConfigDict(extra="allow")


class ModelProvenance(OpenModel):
    """The model, from the request and the encoder's model card (`GET /v1/models/{ref}`)."""

    reference: str = Field(description="The model reference as the request gave it.")
    id: str | None = Field(default=None, description="The encoder's name for it (the card's `id`).")
    family: str | None = Field(default=None, description="The encoder's adapter family.")
    source: str | None = Field(
        default=None, description="Hub repository, folder or open_clip architecture[:pretrained]."
    )
    revision: str | None = Field(
        default=None, description="The pinned hub revision, when the registry has one."
    )
    weights: str | None = Field(
        default=None,
        description="The encoder's identity of the weights that embedded the queries: source, "
        "pretrained tag, revision, and each weight file's name:size:mtime_ns. None when the run "
        "embedded nothing and the model was not loaded (paired runs read both sides from the store).",
    )
    weights_sha256: dict[str, str] = Field(
        default_factory=dict,
        description="sha256 of each local weight file (a checkpoint, a model folder's files) by file "
        "name, from the encoder: the weights' identity on any machine. Empty for hub models (pinned by "
        "`revision`) and when the model was not loaded.",
    )
    indexed_weights: str | None = Field(
        default=None,
        description="The same identity as the indexing job recorded it for the collection's vectors.",
    )
    dimension: int | None = None
    device: str | None = Field(
        default=None, description="Where the encoder ran the model, e.g. 'cuda:0 (NVIDIA H100 80GB HBM3)'."
    )
    precision: str | None = Field(
        default=None,
        description="The encoder's forward precision: fp32 on CPU (or the reference's dtype under "
        "MARSBENCH_ENCODER_CPU_PRECISION=reference), fp32/bf16/fp16 on GPU.",
    )
    preprocessing: str | None = Field(
        default=None,
        description="What turned decoded images into the model's input for the queries: processor class "
        "and backend (transformers' PIL or torchvision), resize, crop, rescale, normalisation; or "
        "open_clip's transforms and which path (PIL or tensor) ran them.",
    )
    indexed_preprocessing: str | None = Field(
        default=None, description="The same, as the indexing job recorded it for the collection's vectors."
    )
    indexed_precision: str | None = Field(
        default=None, description="The forward precision the indexing job recorded for the collection."
    )


class DatasetProvenance(OpenModel):
    """The data, from the task's dataset reader and the dataset folder."""

    path: str = Field(description="The dataset folder, resolved.")
    options: dict[str, str] = Field(default_factory=dict, description="Reader options (paired: caption_key).")
    fingerprint: str = Field(
        description="The reader's fingerprint: a short sha256 over the relative names and sizes of the "
        "files it reads (and its options). It also names the collection; contents are not hashed."
    )
    files: int | None = Field(
        default=None,
        description="Regular files under `path` (hidden entries left out): the indexed files plus ground "
        "truth, query images and metadata.",
    )
    total_bytes: int | None = Field(default=None, description="Their total size.")
    sha256: dict[str, str] = Field(
        default_factory=dict,
        description="Full sha256 of the small files the evaluator reads itself, by path relative to "
        "`path`: geo ground-truth CSV and query images.",
    )


class SoftwareProvenance(OpenModel):
    """The evaluator process's software (the encoder's, in a split deployment, is not reported)."""

    python: str
    marsbench: str
    packages: dict[str, str | None] = Field(
        default_factory=dict,
        description="Installed distribution versions (importlib.metadata), None when not installed.",
    )
    git_commit: str | None = Field(
        default=None, description="HEAD of the marsbench source tree when it is a git checkout."
    )
    git_dirty: bool | None = Field(
        default=None, description="Whether that checkout had uncommitted changes (untracked files count)."
    )


class HostInfo(OpenModel):
    platform: str
    machine: str
    cpu: str | None = Field(default=None, description="CPU model (/proc/cpuinfo), when readable.")
    cores: int | None = Field(default=None, description="CPUs this process may run on.")
    memory_gb: float | None = Field(default=None, description="Physical memory.")


class HardwareProvenance(OpenModel):
    evaluator: HostInfo = Field(description="The host the evaluator (search and metrics) ran on.")
    encoder_device: str | None = Field(
        default=None,
        description="The encoder's device as its model card reports it; None when not reported (the "
        "model was not loaded, or an older encoder).",
    )


class Timings(OpenModel):
    """Wall-clock seconds per phase of the evaluation, in the order they ran."""

    phases: dict[str, float] = Field(
        default_factory=dict,
        description="Non-overlapping phases: model_card (asking the encoder, before and after), "
        "open_dataset (the reader's fingerprint), check_indexing, read_collection, read_ground_truth, "
        "embed_queries, load_index (geo's warm index), search, metrics, curves, figures (geo map), "
        "provenance; a task has only those it runs.",
    )
    total_s: float = Field(
        description="From receiving the request to writing the record; >= the phases' sum."
    )
    indexing_s: float | None = Field(
        default=None,
        description="The indexing job's wall time (created to last update, retries and pauses "
        "included), when the indexer reported a succeeded job.",
    )


class TrainingProvenance(OpenModel):
    """The fine-tuning run behind the model (`marsbench train`), from its `training.json`."""

    record: str = Field(description="Path of the training record (training.json) when linked.")
    record_sha256: str = Field(description="sha256 of that file.")
    name: str = Field(description="The fine-tuned model's registered name.")
    base_model: str
    data_fingerprint: str = Field(description="The paired reader's fingerprint of the training folder.")
    heldout_fingerprint: str | None = Field(
        default=None, description="Fingerprint of the held-out split the trainer wrote (unseen pairs)."
    )
    steps: int
    hyperparameters: dict[str, float | int | str] = Field(default_factory=dict)
    checkpoint_sha256: str = Field(description="sha256 of the weights file; equals model.weights_sha256's.")


class Provenance(OpenModel):
    """Everything a run depends on beyond its request, as known when it ran."""

    request: dict[str, object] = Field(
        default_factory=dict, description="The run request as received: POST it to /v1/runs to rerun."
    )
    model: ModelProvenance
    dataset: DatasetProvenance
    software: SoftwareProvenance
    hardware: HardwareProvenance
    timings: Timings
    training: TrainingProvenance | None = Field(
        default=None, description="The training run of a fine-tuned model (marsbench train); None otherwise."
    )

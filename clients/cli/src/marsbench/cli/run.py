"""`marsbench run <task>`: index (or reuse) a collection, evaluate it, write the run records."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from marsbench.cli.errors import CommandError
from marsbench.cli.stack import LocalStack, StackUrls
from marsbench.client import EncoderClient, EvaluatorClient, IndexerClient
from marsbench.files import write_text_atomic
from marsbench.schemas.jobs import JobCreate, JobState, JobStatus, TaskName
from marsbench.schemas.runs import QueryMode, RunCreate, RunRecord
from marsbench.tasks.modalities import missing_modalities, query_needs, refusal, servable_modes

ProgressFn = Callable[[JobStatus], None]


@dataclass(frozen=True)
class ServiceUrls:
    """Running services to use; when the indexer or evaluator is missing, the CLI starts its own.
    `encoder` (comma-separated replicas) is for commands that read model cards themselves."""

    indexer: str | None = None
    evaluator: str | None = None
    encoder: str | None = None


@dataclass(frozen=True)
class GeoScoring:
    """How a geo-localization run scores its retrievals: `RunCreate`'s fields of the same names,
    whose defaults these are."""

    top_k: int = int(RunCreate.model_fields["top_k"].default)
    radius_deg: float = float(RunCreate.model_fields["radius_deg"].default)
    mix_ratio: float = float(RunCreate.model_fields["mix_ratio"].default)
    temperature: float = float(RunCreate.model_fields["temperature"].default)


def geo_run_request(
    *, model: str, dataset_dir: str, landform: str, mode: QueryMode, scoring: GeoScoring
) -> RunCreate:
    """The evaluator's request for one geo-localization run (landform, query mode)."""
    return RunCreate(
        task=TaskName.GEOLOCALIZATION, model=model, dataset_dir=dataset_dir, landform=landform,
        query_mode=mode, top_k=scoring.top_k, radius_deg=scoring.radius_deg,
        mix_ratio=scoring.mix_ratio, temperature=scoring.temperature,
    )  # fmt: skip


@dataclass(frozen=True)
class SavedRun:
    record: RunRecord
    path: Path


def model_reference(model: str, checkpoint: Path | None) -> str:
    """`--model REF --checkpoint FILE` as one encoder reference, `REF@/abs/FILE`."""
    if checkpoint is None:
        return model
    if not checkpoint.is_file():
        raise CommandError(f"checkpoint file {checkpoint} does not exist")
    if "@" in model:
        raise CommandError(f"model {model!r} already names a checkpoint; drop --checkpoint or the '@' part")
    return f"{model}@{checkpoint.resolve()}"


@contextmanager
def services(urls: ServiceUrls, *, data_dir: Path) -> Iterator[StackUrls]:
    if urls.indexer and urls.evaluator:
        yield StackUrls(encoder=urls.encoder or "", indexer=urls.indexer, evaluator=urls.evaluator)
        return
    if urls.indexer or urls.evaluator:
        raise CommandError("give both --indexer-url and --evaluator-url, or neither to run the services here")
    with LocalStack(data_dir=data_dir) as started:
        yield started


def index(
    urls: StackUrls,
    *,
    task: TaskName,
    dataset_dir: Path,
    model: str,
    on_progress: ProgressFn | None,
    caption_key: str | None = None,
) -> JobStatus:
    """Run (or join, or reuse) the indexing job for this collection and wait for it."""
    request = JobCreate(
        task=task, model=model, dataset_dir=str(dataset_dir.resolve()), caption_key=caption_key
    )
    with IndexerClient(urls.indexer) as indexer:
        job = indexer.create_job(request)
        job = indexer.wait(job.id, on_progress=on_progress)
    if job.state is not JobState.SUCCEEDED:
        raise CommandError(f"indexing job {job.id} {job.state}: {job.error}")
    return job


def save_run(evaluator: EvaluatorClient, record: RunRecord, job: JobStatus, out_dir: Path) -> SavedRun:
    """Write the record into `out_dir` with the indexing job's skips, and fetch its artifacts."""
    parts = (record.task.value, record.caption_key, record.landform, record.query_mode, record.id)
    stem = "-".join(part for part in parts if part)
    artifacts = {}
    for role, name in record.artifacts.items():
        local = f"{stem}.{name.split('.', 1)[1]}" if "." in name else f"{stem}.{role}"
        (out_dir / local).parent.mkdir(parents=True, exist_ok=True)
        (out_dir / local).write_bytes(evaluator.artifact(record.id, name))
        artifacts[role] = local
    indexing = {
        **(record.indexing or {}),  # the evaluator's view of the job (state, progress)
        "job": job.id,
        "skipped": job.skipped,
        "skipped_items": [item.model_dump() for item in job.skipped_items],
    }
    notes = list(record.notes)
    if job.skipped:
        # The reference drops some of these silently, keeps others (duplicates, truncated images)
        # or stops on a damaged shard: say so beside the numbers.
        notes.append(
            f"{job.skipped} item(s) were skipped while indexing (see indexing.skipped_items); "
            "numbers compare with the reference's only if it left out the same items"
        )
    update = {"indexing": indexing, "skipped": job.skipped, "artifacts": artifacts, "notes": notes}
    record = record.model_copy(update=update)
    path = out_dir / f"{stem}.json"
    write_text_atomic(path, record.model_dump_json(indent=2))
    return SavedRun(record, path)


def run_task(
    urls: StackUrls,
    *,
    task: TaskName,
    dataset_dir: Path,
    model: str,
    out_dir: Path,
    max_k: int | None = None,
    caption_key: str | None = None,
    top_lists: bool = False,
    on_progress: ProgressFn | None = None,
) -> tuple[RunRecord, Path]:
    """Landform or paired retrieval: one index job, one run."""
    job = index(
        urls,
        task=task,
        dataset_dir=dataset_dir,
        model=model,
        on_progress=on_progress,
        caption_key=caption_key,
    )
    request = RunCreate(
        task=task, model=model, dataset_dir=str(dataset_dir.resolve()), max_k=max_k,
        caption_key=caption_key, top_lists=top_lists,
    )  # fmt: skip
    with EvaluatorClient(urls.evaluator) as evaluator:
        record = evaluator.create_run(request)
        saved = save_run(evaluator, record, job, out_dir)
    return saved.record, saved.path


def run_geolocalization(
    urls: StackUrls,
    *,
    dataset_dir: Path,
    model: str,
    landforms: Sequence[str],
    modes: Sequence[QueryMode],
    out_dir: Path,
    scoring: GeoScoring | None = None,
    on_progress: ProgressFn | None = None,
    on_skip: Callable[[str], None] | None = None,
) -> list[SavedRun]:
    """One index job, then one run per (landform, query mode), scored by `scoring` (default: the
    evaluator's defaults). Modes the model cannot serve (text and hybrid for an image-only model)
    are left out up front and reported through `on_skip`."""
    if not urls.encoder:
        raise CommandError(
            "geo-localization with running services needs --encoder-url (or MARSBENCH_ENCODER_URL): "
            "the encoder's model card says which query modes the model can serve"
        )
    with EncoderClient(urls.encoder) as encoder:
        offered = encoder.model_info(model, load=False).modalities
    servable = servable_modes(offered, modes)
    for mode in modes:
        if mode not in servable and on_skip is not None:
            missing = missing_modalities(query_needs(TaskName.GEOLOCALIZATION, mode), offered)
            on_skip(f"{mode.value} queries: {refusal(model, TaskName.GEOLOCALIZATION, missing, mode)}")
    if not servable:
        return []
    job = index(
        urls, task=TaskName.GEOLOCALIZATION, dataset_dir=dataset_dir, model=model, on_progress=on_progress
    )
    saved: list[SavedRun] = []
    with EvaluatorClient(urls.evaluator) as evaluator:
        for landform in landforms:
            for mode in servable:
                request = geo_run_request(
                    model=model, dataset_dir=str(dataset_dir.resolve()), landform=landform, mode=mode,
                    scoring=scoring or GeoScoring(),
                )  # fmt: skip
                saved.append(save_run(evaluator, evaluator.create_run(request), job, out_dir))
    return saved

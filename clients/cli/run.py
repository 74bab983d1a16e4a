"""`marsbench run <task>`: index (or reuse) a collection, evaluate it, write the run record."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from marsbench.cli.errors import CommandError
from marsbench.cli.stack import LocalStack, StackUrls
from marsbench.client import EvaluatorClient, IndexerClient
from marsbench.files import write_text_atomic
from marsbench.schemas.jobs import JobCreate, JobState, JobStatus, TaskName
from marsbench.schemas.runs import RunCreate, RunRecord


@dataclass(frozen=True)
class ServiceUrls:
    """Running services to use; when the indexer or evaluator is missing, the CLI starts its own."""

    indexer: str | None = None
    evaluator: str | None = None


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
        yield StackUrls(encoder="", indexer=urls.indexer, evaluator=urls.evaluator)
        return
    if urls.indexer or urls.evaluator:
        raise CommandError("give both --indexer-url and --evaluator-url, or neither to run the services here")
    with LocalStack(data_dir=data_dir) as started:
        yield started


def run_task(
    urls: StackUrls,
    *,
    task: TaskName,
    dataset_dir: Path,
    model: str,
    out_dir: Path,
    max_k: int | None = None,
    on_progress: Callable[[JobStatus], None] | None = None,
) -> tuple[RunRecord, Path]:
    dataset = str(dataset_dir.resolve())
    with IndexerClient(urls.indexer) as indexer:
        job = indexer.create_job(JobCreate(task=task, model=model, dataset_dir=dataset))
        job = indexer.wait(job.id, on_progress=on_progress)
    if job.state is not JobState.SUCCEEDED:
        raise CommandError(f"indexing job {job.id} {job.state}: {job.error}")
    with EvaluatorClient(urls.evaluator) as evaluator:
        record = evaluator.create_run(RunCreate(task=task, model=model, dataset_dir=dataset, max_k=max_k))
    indexing = {
        "job": job.id,
        "skipped": job.skipped,
        "skipped_items": [item.model_dump() for item in job.skipped_items],
    }
    record = record.model_copy(update={"indexing": indexing})
    path = out_dir / f"{task.value}-{record.id}.json"
    write_text_atomic(path, record.model_dump_json(indent=2))
    return record, path

"""The searchable collections: what the store holds, with what each one's latest indexing job says.

The store knows names, vector sizes and point counts; only the indexer's jobs know the task, the
model a query must be embedded with and the dataset the images came from. An evaluator without an
indexer, or with one that does not answer, still lists every collection: the page then asks for
the model itself.
"""

from __future__ import annotations

from marsbench.evaluator.core.ports import IndexingJobs, UpstreamError
from marsbench.schemas.jobs import JobStatus, TaskName
from marsbench.schemas.search import IndexerLink, SearchableCollection, SearchableCollectionList
from marsbench.store import CollectionInfo, VectorStore

NO_INDEXER = "the evaluator has no MARSBENCH_INDEXER_URL: it cannot tell which job wrote a collection"
_NAME_SEPARATOR = "__"  # marsbench.store.naming joins task, model and variant with it


def latest_jobs(jobs: list[JobStatus]) -> dict[str, JobStatus]:
    """Each collection's latest job; `jobs` come oldest first, as the indexer lists them."""
    return {job.collection: job for job in jobs}


def task_of_name(name: str) -> str | None:
    """The task a collection name starts with (`<task>__<model>__<variant>`), if it names one."""
    head = name.split(_NAME_SEPARATOR, 1)[0]
    return head if head in {task.value for task in TaskName} else None


def describe(info: CollectionInfo, job: JobStatus | None) -> SearchableCollection:
    task = job.task.value if job is not None else task_of_name(info.name)
    return SearchableCollection(
        name=info.name,
        vectors=info.vectors,
        points=info.points,
        task=task,
        model=job.model if job is not None else None,
        dataset_dir=job.dataset_dir if job is not None else None,
        state=job.state if job is not None else None,
        geo=task == TaskName.GEOLOCALIZATION.value,
        images=job is not None,
    )


def fetch_jobs(indexing: IndexingJobs | None) -> tuple[list[JobStatus], IndexerLink, str | None]:
    """Every job the indexer knows, how the indexer answered, and why there are none if so."""
    if indexing is None:
        return [], "not configured", NO_INDEXER
    try:
        return indexing.jobs(), "connected", None
    except UpstreamError as exc:
        return [], "unavailable", f"the indexer did not answer ({exc}): models and datasets are unknown"


def searchable_collections(store: VectorStore, indexing: IndexingJobs | None) -> SearchableCollectionList:
    jobs, link, message = fetch_jobs(indexing)
    latest = latest_jobs(jobs)
    data = [describe(info, latest.get(info.name)) for info in store.list_collections()]
    return SearchableCollectionList(data=data, indexer=link, message=message)

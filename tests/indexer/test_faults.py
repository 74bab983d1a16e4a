"""Services going away during an indexing job (issue 9, item 5).

The encoder or a Qdrant server unreachable mid-job: the job retries with backoff from where it
stopped; when the outage outlasts its retries it fails with the reason, keeps what it wrote, and
resumes on request (also after an indexer restart) without duplicates or gaps. Runs the real
JobManager and pipeline on an embedded store; the outages are injected at the ports, as the HTTP
adapters raise them once the clients' own retries are spent.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from marsbench import client
from marsbench.indexer.adapters import encoder_error
from marsbench.indexer.core.errors import JobConflict, JobNotFound
from marsbench.indexer.core.jobs import JobManager, is_transient
from marsbench.indexer.core.ports import EncoderError, ServiceUnavailable
from marsbench.schemas.jobs import JobCreate, JobState, JobStatus, TaskName
from marsbench.store import EmbeddedStore, Point, StoreError, StoreUnavailable
from tests.fakes import FakeEncoder

IMAGES = 15  # tests.conftest.landform_folders: 16 files, one corrupt


class Outage:
    """Calls numbered `first` .. `first + calls - 1` (from 0) fail; None calls: down for good."""

    def __init__(self, first: int, calls: int | None) -> None:
        self.first = first
        self.calls = calls
        self.seen = 0

    def hit(self) -> bool:
        n = self.seen
        self.seen += 1
        return n >= self.first and (self.calls is None or n < self.first + self.calls)


class EncoderWithOutage(FakeEncoder):
    def __init__(self, outage: Outage) -> None:
        super().__init__()
        self.outage = outage

    def embed_images(self, model: str, images: Sequence[bytes], names: Sequence[str] | None = None):  # type: ignore[no-untyped-def]
        if self.outage.hit():
            raise ServiceUnavailable(
                "POST /v1/embeddings/images: no answer from http://encoder:8000 (connection refused)"
            )
        return super().embed_images(model, images, names)


class StoreWithOutage:
    """The embedded store, with upserts failing as `ServerStore` fails when Qdrant is down."""

    def __init__(self, inner: EmbeddedStore, outage: Outage) -> None:
        self._inner = inner
        self.outage = outage

    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        if self.outage.hit():
            raise StoreUnavailable(
                "Qdrant at http://qdrant:6333 did not answer: [Errno 111] Connection refused"
            )
        self._inner.upsert(collection, points)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def manager(store: object, tmp_path: Path, encoder: FakeEncoder, *, retries: int = 2) -> JobManager:
    return JobManager(
        store,  # type: ignore[arg-type]
        encoder,
        tmp_path / "jobs",
        batch_size=2,
        in_flight=1,
        retries=retries,
        retry_backoff_s=0.01,
    )


def run_job(jobs: JobManager, dataset: Path) -> JobStatus:
    job = jobs.submit(JobCreate(task=TaskName.LANDFORM, model="fake", dataset_dir=str(dataset)))
    return jobs.wait(job.id, 60)


def test_transient_failures_are_the_unreachable_and_the_restarting() -> None:
    # The encoder's failures as the client raises them, through the HTTP adapter's translation.
    assert is_transient(encoder_error(client.ServiceUnavailable("no answer")))
    assert is_transient(StoreUnavailable("no answer"))
    assert is_transient(encoder_error(client.ApiError(503, "Unavailable", "starting", None)))
    assert is_transient(encoder_error(client.ApiError(429, "Busy", "queue full", None)))
    assert not is_transient(encoder_error(client.ApiError(422, "InvalidInput", "bad image", None)))
    assert not is_transient(StoreError("collection 'x': wrong vector size"))
    assert not is_transient(ValueError("bug"))


def test_a_short_encoder_outage_is_retried_inside_the_job(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path
) -> None:
    encoder = EncoderWithOutage(Outage(first=3, calls=2))  # fails twice, then answers again
    job = run_job(manager(store, tmp_path, encoder, retries=2), landform_folders)
    assert job.state is JobState.SUCCEEDED, job.error
    assert job.attempts == 3 and job.error is None
    assert (job.done, job.skipped) == (IMAGES, 1)
    assert store.count(job.collection) == IMAGES


def test_a_long_encoder_outage_fails_the_job_which_resumes_on_request(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path
) -> None:
    outage = Outage(first=3, calls=None)
    encoder = EncoderWithOutage(outage)
    jobs = manager(store, tmp_path, encoder, retries=2)
    failed = run_job(jobs, landform_folders)
    assert failed.state is JobState.FAILED and failed.attempts == 3
    assert failed.error is not None and failed.error.startswith("ServiceUnavailable: ")
    assert "no answer from http://encoder:8000" in failed.error
    assert f"/v1/jobs/{failed.id}/resume" in failed.error and "after 3 attempts" in failed.error
    kept = store.count(failed.collection)
    assert 0 < kept < IMAGES  # what was written before the outage stays

    outage.calls = 0  # the encoder is back
    before = encoder.images_embedded
    jobs.resume(failed.id)
    done = jobs.wait(failed.id, 60)
    assert done.id == failed.id and done.state is JobState.SUCCEEDED, done.error
    assert done.attempts == 4 and done.error is None
    assert (done.done, done.skipped) == (IMAGES, 1)  # the corrupt file once, not once per attempt
    assert store.count(done.collection) == IMAGES  # no duplicates: point ids derive from the keys
    assert encoder.images_embedded - before == IMAGES - kept  # only what was missing
    [listed] = jobs.collections()
    assert listed.complete is True


def test_a_failed_job_stays_failed_across_a_restart_and_resumes_on_request_there(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path
) -> None:
    failed = run_job(
        manager(store, tmp_path, EncoderWithOutage(Outage(3, None)), retries=0), landform_folders
    )
    assert failed.state is JobState.FAILED and failed.attempts == 1
    kept = store.count(failed.collection)

    healthy = FakeEncoder()
    jobs = manager(store, tmp_path, healthy)  # a new indexer process over the same state
    assert jobs.get(failed.id).state is JobState.FAILED and jobs.resume_unfinished() == []
    jobs.resume(failed.id)
    done = jobs.wait(failed.id, 60)
    assert done.state is JobState.SUCCEEDED, done.error
    assert store.count(done.collection) == IMAGES
    assert healthy.images_embedded == IMAGES - kept

    # Asking for the collection again (a new job) also completes it, reading nothing new.
    again = run_job(jobs, landform_folders)
    assert again.id != failed.id and again.state is JobState.SUCCEEDED
    assert store.count(again.collection) == IMAGES


def test_a_qdrant_outage_is_retried_then_fails_the_job_which_resumes(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path
) -> None:
    short = StoreWithOutage(store, Outage(first=2, calls=1))
    job = run_job(manager(short, tmp_path, FakeEncoder(), retries=2), landform_folders)
    assert job.state is JobState.SUCCEEDED and job.attempts == 2
    assert store.count(job.collection) == IMAGES
    store.delete_collection(job.collection)

    outage = Outage(first=2, calls=None)
    jobs = manager(StoreWithOutage(store, outage), tmp_path / "second", FakeEncoder(), retries=1)
    failed = run_job(jobs, landform_folders)
    assert failed.state is JobState.FAILED and failed.attempts == 2
    assert failed.error is not None and failed.error.startswith("StoreUnavailable: Qdrant at ")
    kept = store.count(failed.collection)
    assert 0 < kept < IMAGES

    outage.calls = 0  # Qdrant is back
    jobs.resume(failed.id)
    done = jobs.wait(failed.id, 60)
    assert done.state is JobState.SUCCEEDED, done.error
    assert store.count(done.collection) == IMAGES


def test_only_a_failed_job_resumes(store: EmbeddedStore, tmp_path: Path, landform_folders: Path) -> None:
    jobs = manager(store, tmp_path, FakeEncoder())
    done = run_job(jobs, landform_folders)
    with pytest.raises(JobConflict, match="already complete"):
        jobs.resume(done.id)
    with pytest.raises(JobNotFound):
        jobs.resume("nosuchjob")


def test_a_non_transient_failure_is_not_retried(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path
) -> None:
    class Refusing(FakeEncoder):
        def embed_images(self, model, images, names=None):  # type: ignore[no-untyped-def]
            self.image_calls += 1
            raise EncoderError("400 BadRequest: this model takes no images")

    encoder = Refusing()
    failed = run_job(manager(store, tmp_path, encoder, retries=3), landform_folders)
    assert failed.state is JobState.FAILED and failed.attempts == 1 and encoder.image_calls == 1
    assert failed.error is not None and "resume" not in failed.error

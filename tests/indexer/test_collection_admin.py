"""Issue 18, item 7: delete a collection, cancel a job, export a collection to a snapshot and import it
again, through the job manager, the HTTP API, the Python client and the CLI."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from marsbench.cli import main as cli
from marsbench.client import ApiError, IndexerClient
from marsbench.indexer.app import create_app
from marsbench.indexer.core.errors import CollectionBusy, InvalidSnapshot, JobConflict, NotFound
from marsbench.indexer.core.jobs import JobManager
from marsbench.indexer.settings import IndexerSettings
from marsbench.schemas.jobs import JobCreate, JobState, SnapshotImport, TaskName
from marsbench.store import EmbeddedStore
from tests.fakes import FakeEncoder


class GatedEncoder(FakeEncoder):
    """Lets `free` calls through, then blocks each call until `gate` is set."""

    def __init__(self, free: int = 1) -> None:
        super().__init__()
        self.free = free
        self.gate = threading.Event()
        self.blocked = threading.Event()

    def embed_images(
        self, model: str, images: Sequence[bytes], names: Sequence[str] | None = None
    ) -> np.ndarray:
        if self.image_calls >= self.free:
            self.blocked.set()
            self.gate.wait(30)
        return super().embed_images(model, images, names)


def manager(store: EmbeddedStore, tmp_path: Path, encoder: FakeEncoder | None = None) -> JobManager:
    return JobManager(store, encoder or FakeEncoder(), tmp_path / "jobs", batch_size=4, in_flight=1)


def request(dataset: Path) -> JobCreate:
    return JobCreate(task=TaskName.LANDFORM, model="fake", dataset_dir=str(dataset))


def indexed(jobs: JobManager, dataset: Path) -> str:
    job = jobs.wait(jobs.submit(request(dataset)).id, 30)
    assert job.state is JobState.SUCCEEDED, job.error
    return job.collection


def top_ids(store: EmbeddedStore, collection: str) -> list[list[str]]:
    queries = np.stack([p.vectors["image"] for p in store.scroll(collection, with_vectors=True)][:5])
    return [[h.id for h in hits] for hits in store.search_batch(collection, queries, using="image", limit=10)]


# -- delete ---------------------------------------------------------------------------------------


def test_delete_drops_the_collection_and_its_manifest(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path
) -> None:
    jobs = manager(store, tmp_path)
    collection = indexed(jobs, landform_folders)
    folder = store.root / "collections" / collection
    assert (folder / "manifest.json").is_file()  # sealed by the job
    assert jobs.delete_collection(collection).deleted
    assert not folder.exists() and jobs.collections() == []
    with pytest.raises(NotFound):
        jobs.delete_collection(collection)
    # Indexing it again starts from nothing and completes.
    assert store.count(indexed(jobs, landform_folders)) == 15


def test_delete_and_export_are_refused_while_a_job_writes(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path
) -> None:
    encoder = GatedEncoder()
    jobs = manager(store, tmp_path, encoder)
    job = jobs.submit(request(landform_folders))
    assert encoder.blocked.wait(30)
    with pytest.raises(CollectionBusy, match="cancel it first"):
        jobs.delete_collection(job.collection)
    with pytest.raises(CollectionBusy):
        jobs.export_snapshot(job.collection)
    encoder.gate.set()
    assert jobs.wait(job.id, 30).state is JobState.SUCCEEDED
    assert store.count(job.collection) == 15  # nothing was dropped


# -- cancel ---------------------------------------------------------------------------------------


def test_cancel_stops_at_a_batch_boundary_keeps_what_was_written_and_resumes(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path
) -> None:
    encoder = GatedEncoder()
    jobs = manager(store, tmp_path, encoder)
    job = jobs.submit(request(landform_folders))
    assert encoder.blocked.wait(30)
    jobs.cancel(job.id)
    encoder.gate.set()  # the batch in flight is written, then the job stops
    cancelled = jobs.wait(job.id, 30)
    assert cancelled.state is JobState.CANCELLED and "resume" in (cancelled.error or "")
    kept = store.count(job.collection)
    assert 0 < kept < 15 and cancelled.done == kept
    assert not (store.root / "collections" / job.collection / "manifest.json").exists()  # not sealed
    [listed] = jobs.collections()
    assert listed.complete is False
    with pytest.raises(JobConflict):
        jobs.cancel(job.id)  # already stopped
    # Persisted: a restart neither resumes it by itself nor forgets it.
    restarted = manager(store, tmp_path)
    assert restarted.resume_unfinished() == [] and restarted.get(job.id).state is JobState.CANCELLED
    encoder2 = FakeEncoder()
    resumed_by = manager(store, tmp_path, encoder2)
    resumed_by.resume(job.id)
    done = resumed_by.wait(job.id, 30)
    assert done.state is JobState.SUCCEEDED and done.done == 15
    assert encoder2.images_embedded <= 15 - kept + 1  # the kept points were not embedded again
    with pytest.raises(JobConflict):
        resumed_by.cancel(job.id)  # finished: 409


def test_cancel_a_queued_job_that_no_thread_runs(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path
) -> None:
    jobs = manager(store, tmp_path)
    job = jobs.wait(jobs.submit(request(landform_folders)).id, 30)
    path = tmp_path / "jobs" / f"{job.id}.json"
    path.write_text(path.read_text().replace('"succeeded"', '"queued"'))
    restarted = manager(store, tmp_path)  # not resumed: queued, no thread
    assert restarted.cancel(job.id).state is JobState.CANCELLED
    assert json.loads(path.read_text())["state"] == "cancelled"


# -- snapshots ------------------------------------------------------------------------------------


def test_snapshot_round_trip_gives_the_same_points_and_results(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path
) -> None:
    jobs = manager(store, tmp_path)
    collection = indexed(jobs, landform_folders)
    points = {p.id: p.payload for p in store.scroll(collection)}
    before = top_ids(store, collection)
    snapshot = jobs.export_snapshot(collection)
    assert Path(snapshot.path).parent == tmp_path / "snapshots" and snapshot.points == 15
    assert snapshot.size == Path(snapshot.path).stat().st_size and len(snapshot.sha256) == 64
    assert store.count(collection) == 15  # the export leaves it as it was
    with pytest.raises(CollectionBusy, match="already exists"):
        jobs.import_snapshot(SnapshotImport(snapshot=snapshot.name))
    jobs.delete_collection(collection)
    imported = jobs.import_snapshot(SnapshotImport(snapshot=snapshot.name))
    assert imported.name == collection and imported.points == 15 and imported.complete is True
    assert {p.id: p.payload for p in store.scroll(collection)} == points
    assert top_ids(store, collection) == before
    # Sealed on import, and survives a reopen.
    store.close()
    reopened = EmbeddedStore(store.root)
    assert reopened.count(collection) == 15 and top_ids(reopened, collection) == before
    reopened.close()


def test_import_under_another_name_and_bad_snapshots(
    store: EmbeddedStore, tmp_path: Path, landform_folders: Path
) -> None:
    jobs = manager(store, tmp_path)
    collection = indexed(jobs, landform_folders)
    snapshot = jobs.export_snapshot(collection)
    copy = jobs.import_snapshot(SnapshotImport(snapshot=snapshot.name, collection="copy_of_it"))
    assert copy.points == 15 and store.count(collection) == 15
    with pytest.raises(NotFound):
        jobs.import_snapshot(SnapshotImport(snapshot="nothing.snapshot"))
    outside = tmp_path / "outside.snapshot"
    outside.write_bytes(Path(snapshot.path).read_bytes())
    (tmp_path / "snapshots" / "link.snapshot").symlink_to(outside)
    with pytest.raises(NotFound):  # a link out of the folder is not followed
        jobs.import_snapshot(SnapshotImport(snapshot="link.snapshot", collection="other"))
    (tmp_path / "snapshots" / "junk.snapshot").write_bytes(b"not a tar")
    with pytest.raises(InvalidSnapshot):
        jobs.import_snapshot(SnapshotImport(snapshot="junk.snapshot", collection="other"))
    damaged = bytearray(Path(snapshot.path).read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    (tmp_path / "snapshots" / "damaged.snapshot").write_bytes(bytes(damaged))
    with pytest.raises(InvalidSnapshot):
        jobs.import_snapshot(SnapshotImport(snapshot="damaged.snapshot", collection="other"))
    assert sorted(c.name for c in store.list_collections()) == sorted([collection, "copy_of_it"])
    assert not list((store.root / "imports").glob("*"))  # no debris


def test_snapshot_names_are_never_paths() -> None:
    for bad in ("../x.snapshot", "/etc/passwd", "a/b.snapshot", ".hidden"):
        with pytest.raises(ValueError):
            SnapshotImport(snapshot=bad)


# -- HTTP API, Python client and CLI ---------------------------------------------------------------


@pytest.fixture
def api(tmp_path: Path, store: EmbeddedStore) -> Iterator[IndexerClient]:
    settings = IndexerSettings(data_dir=tmp_path, resume_jobs=False)
    with TestClient(create_app(settings, store=store)) as http:
        http.app.state.jobs = manager(store, tmp_path)  # type: ignore[attr-defined]

        def via_app(request: httpx.Request) -> httpx.Response:
            answer = http.request(
                request.method, request.url.path, content=request.content, headers=dict(request.headers)
            )
            return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

        with IndexerClient("http://indexer", transport=httpx.MockTransport(via_app), retries=0) as client:
            yield client


def test_api_and_client_delete_cancel_export_import(api: IndexerClient, landform_folders: Path) -> None:
    job = api.wait(api.create_job(request(landform_folders)).id, poll_s=0.05)
    assert job.state is JobState.SUCCEEDED
    with pytest.raises(ApiError) as caught:
        api.cancel(job.id)
    assert caught.value.status == 409
    with pytest.raises(ApiError) as caught:
        api.cancel("nope")
    assert caught.value.status == 404
    snapshot = api.export_snapshot(job.collection)
    assert snapshot.backend == "embedded" and snapshot.points == 15
    assert api.delete_collection(job.collection).deleted
    with pytest.raises(ApiError) as caught:
        api.delete_collection(job.collection)
    assert caught.value.status == 404
    with pytest.raises(ApiError) as caught:
        api.export_snapshot(job.collection)
    assert caught.value.status == 404
    restored = api.import_snapshot(snapshot.name)
    assert restored.name == job.collection and restored.points == 15
    with pytest.raises(ApiError) as caught:
        api.import_snapshot(snapshot.name)
    assert caught.value.status == 409
    with pytest.raises(ApiError) as caught:
        api.request("POST", "/v1/collections/import", json={"snapshot": "../../etc/passwd"})
    assert caught.value.status == 422


def test_cli_collections_and_jobs_commands(
    api: IndexerClient,
    landform_folders: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import marsbench.client as client_module

    monkeypatch.setattr(client_module, "IndexerClient", lambda url: api)
    monkeypatch.setattr(IndexerClient, "close", lambda self: None)  # the fixture closes it
    job = api.wait(api.create_job(request(landform_folders)).id, poll_s=0.05)
    capsys.readouterr()
    assert cli.main(["collections", "export", job.collection]) == 0
    snapshot = json.loads(capsys.readouterr().out)
    assert snapshot["collection"] == job.collection and Path(snapshot["path"]).is_file()
    assert cli.main(["collections", "delete", job.collection, "--yes"]) == 0
    assert json.loads(capsys.readouterr().out) == {"name": job.collection, "deleted": True}
    assert cli.main(["collections", "import", snapshot["path"]]) == 0  # a path: its file name is taken
    assert json.loads(capsys.readouterr().out)["points"] == 15
    assert cli.main(["collections"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == job.collection
    assert cli.main(["jobs", "cancel", job.id]) == 2  # finished: 409
    assert "succeeded" in capsys.readouterr().err
    assert cli.main(["collections", "delete"]) == 2


def test_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    from marsbench.version import __version__

    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"marsbench {__version__}"

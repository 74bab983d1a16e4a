"""Bad data during an indexing job (issue 9, item 5).

Each bad item is skipped and reported by name (shard, member or row) while the rest is indexed.
Runs the real JobManager on an embedded store with the fake encoder. Services going away
mid-job: tests/indexer/test_faults.py.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marsbench.datasets.coords import tile_name
from marsbench.datasets.geo import DEFAULT_VARIANT
from marsbench.indexer.core.jobs import JobManager
from marsbench.schemas.jobs import JobCreate, JobState, JobStatus, TaskName
from marsbench.store import EmbeddedStore, point_id
from tests.conftest import png_bytes
from tests.fakes import FakeEncoder


def manager(store: EmbeddedStore, tmp_path: Path, encoder: FakeEncoder | None = None) -> JobManager:
    return JobManager(store, encoder or FakeEncoder(), tmp_path / "jobs", batch_size=2, in_flight=1)


def run_job(jobs: JobManager, task: TaskName, dataset: Path) -> JobStatus:
    job = jobs.submit(JobCreate(task=task, model="fake", dataset_dir=str(dataset)))
    return jobs.wait(job.id, 60)


def skipped(job: JobStatus) -> dict[str, str]:
    return {item.key: item.reason for item in job.skipped_items}


def tar_bytes(members: Sequence[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def tile(i: int) -> str:
    return tile_name(float(i), float(-i))


# ----------------------------------------------------------------------------- bad shards and members


@pytest.fixture
def geo_dataset(tmp_path: Path) -> Path:
    """One source, five shards: two good ones around a corrupt, a truncated and an empty one."""
    root = tmp_path / "geo"
    source = root / "tiles" / DEFAULT_VARIANT / "thumb" / "src"
    source.mkdir(parents=True)
    (source / "000000.tar").write_bytes(
        tar_bytes(
            [
                (tile(0), png_bytes(0)),
                (tile(0).replace(".png", ".json"), b"{}"),  # a sidecar: not a tile, ignored
                (tile(1), b""),  # a zero-byte image
                (tile(2), b"this is text, not an image"),  # a non-image member named .png
                ("README", b"no extension"),
                (tile(3), png_bytes(3)),
            ]
        )
    )
    (source / "000001.tar").write_bytes(b"\x07garbage" * 300)  # corrupt: no tar at all
    whole = tar_bytes([(tile(10), png_bytes(10)), (tile(11), png_bytes(11))])
    first_member = 512 + -(-len(png_bytes(10)) // 512) * 512
    (source / "000002.tar").write_bytes(whole[: first_member + 512 + 40])  # cut inside the 2nd member
    (source / "000003.tar").write_bytes(b"")  # empty (0 bytes)
    # A minor issue (a member without extension) before a fatal one (cut mid-member): both reported.
    damaged = tar_bytes([("NOTES", b"x"), (tile(30), png_bytes(30)), (tile(31), png_bytes(31))])
    (source / "000005.tar").write_bytes(damaged[: 3 * 512 + len(png_bytes(30)) + 512 + 10])
    (source / "000004.tar").write_bytes(tar_bytes([(tile(20), png_bytes(20)), (tile(21), png_bytes(21))]))
    return root


def test_bad_shards_and_members_are_skipped_by_name_and_the_rest_indexed(
    store: EmbeddedStore, tmp_path: Path, geo_dataset: Path
) -> None:
    job = run_job(manager(store, tmp_path), TaskName.GEOLOCALIZATION, geo_dataset)
    assert job.state is JobState.SUCCEEDED, job.error
    good = [f"src/{tile(i)}" for i in (0, 3, 10, 20, 21, 30)]
    assert job.done == len(good) and store.count(job.collection) == len(good)
    assert {p.id for p in store.retrieve(job.collection, [point_id(k) for k in good])} == {
        point_id(k) for k in good
    }
    reasons = skipped(job)
    assert reasons[f"src/{tile(1)}"] == "empty image (0 bytes)"
    assert "cannot decode image" in reasons[f"src/{tile(2)}"]
    assert "src/000000.tar" not in reasons  # read to its end: only its bad member is reported
    assert reasons["src/000000.tar: member 'README' has no extension"] == "member 'README' has no extension"
    assert "invalid header" in reasons["src/000001.tar"]
    assert "unexpected end of data" in reasons["src/000002.tar"]
    assert "read 1 sample(s)" in reasons["src/000002.tar"]
    assert "empty file" in reasons["src/000003.tar"]
    assert reasons["src/000005.tar: member 'NOTES' has no extension"] == "member 'NOTES' has no extension"
    assert reasons["src/000005.tar"].endswith("read 1 sample(s) before it")
    assert job.skipped == len(reasons) == 8
    # Only the shards read to their end are finished units; the damaged ones are retried on resume.
    assert sorted(job.completed_units) == ["src/000000.tar", "src/000004.tar"]


def test_asking_again_rereads_only_the_damaged_shards_and_adds_nothing(
    store: EmbeddedStore, tmp_path: Path, geo_dataset: Path
) -> None:
    first = run_job(manager(store, tmp_path), TaskName.GEOLOCALIZATION, geo_dataset)
    encoder = FakeEncoder()
    again = run_job(manager(store, tmp_path, encoder), TaskName.GEOLOCALIZATION, geo_dataset)
    assert again.state is JobState.SUCCEEDED, again.error
    assert again.id != first.id and again.collection == first.collection
    assert store.count(again.collection) == first.done == again.done
    assert encoder.images_embedded == 0  # what is stored is never embedded again
    assert skipped(again).keys() >= {"src/000001.tar", "src/000002.tar", "src/000003.tar", "src/000005.tar"}


# ----------------------------------------------------------------------------- landform folders and rows


def test_landform_folder_with_empty_and_non_image_files(store: EmbeddedStore, tmp_path: Path) -> None:
    root = tmp_path / "landform"
    for name in ("crater", "dune"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            (root / name / f"{name}_{i}.png").write_bytes(png_bytes(i + len(name)))
    (root / "crater" / "empty.png").write_bytes(b"")
    (root / "dune" / "notes.png").write_bytes(b"a text file with an image name")
    job = run_job(manager(store, tmp_path), TaskName.LANDFORM, root)
    assert job.state is JobState.SUCCEEDED, job.error
    assert (job.total, job.done, job.skipped) == (8, 6, 2)
    reasons = skipped(job)
    assert reasons["crater/empty.png"] == "empty file"
    assert "cannot decode image" in reasons["dune/notes.png"]


def test_landform_parquet_bad_rows_are_skipped_by_name(store: EmbeddedStore, tmp_path: Path) -> None:
    root = tmp_path / "landform"
    root.mkdir()
    images = [png_bytes(1), None, png_bytes(3), png_bytes(4), b"not a png", png_bytes(6)]
    cells = [{"bytes": b, "path": None} for b in images]
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "image": pa.array(cells, type=image_type),
            "label": pa.array([0, 0, None, 1, 1, 1], type=pa.int64()),
            "image_id": pa.array(["a", "nobytes", "nolabel", "b", "textbytes", "a"]),
        }
    )
    pq.write_table(table, root / "train.parquet")
    job = run_job(manager(store, tmp_path), TaskName.LANDFORM, root)
    assert job.state is JobState.SUCCEEDED, job.error
    assert (job.total, job.done) == (6, 2)
    reasons = skipped(job)
    assert reasons["nobytes"] == "no image bytes"
    assert reasons["nolabel"] == "missing label"
    assert "cannot decode image" in reasons["textbytes"]
    assert reasons["a"] == "duplicate image name"


def test_landform_parquet_file_that_is_no_parquet_is_skipped_by_name(
    store: EmbeddedStore, tmp_path: Path
) -> None:
    root = tmp_path / "landform"
    root.mkdir()
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    cells = [{"bytes": png_bytes(i), "path": None} for i in range(4)]
    table = pa.table(
        {"image": pa.array(cells, type=image_type), "label": [0, 0, 1, 1], "image_id": list("abcd")}
    )
    pq.write_table(table, root / "train-00000-of-00002.parquet")
    (root / "train-00001-of-00002.parquet").write_bytes(b"not parquet at all " * 20)
    job = run_job(manager(store, tmp_path), TaskName.LANDFORM, root)
    assert job.state is JobState.SUCCEEDED, job.error
    assert (job.total, job.done, job.skipped) == (4, 4, 1)
    reason = skipped(job)["train-00001-of-00002.parquet"]
    assert reason.startswith("unreadable parquet file, skipped whole: ") and "magic bytes" in reason


# ------------------------------------------------------------------ nothing indexed (issue 18, item 4)


def _paired_shard(root: Path, n: int) -> None:
    members = []
    for i in range(n):
        document = {"key": f"{i:09d}", "ori_caption": "a crater", "caption": {"refined_caption": "a crater."}}
        members += [(f"{i:09d}.jpg", png_bytes(i)), (f"{i:09d}.json", json.dumps(document).encode())]
    root.mkdir(parents=True, exist_ok=True)
    (root / "000000.tar").write_bytes(tar_bytes(members))


def test_a_misspelt_caption_key_fails_the_job_naming_the_key_and_the_fields(
    store: EmbeddedStore, tmp_path: Path
) -> None:
    root = tmp_path / "paired"
    _paired_shard(root, 6)
    jobs = manager(store, tmp_path)
    request = JobCreate(
        task=TaskName.PAIRED, model="fake", dataset_dir=str(root), caption_key="refined_captoin"
    )
    job = jobs.wait(jobs.submit(request).id, 60)
    assert job.state is JobState.FAILED and job.done == 0
    assert job.error is not None and "'refined_captoin' is in none of the 6 samples" in job.error
    assert "top-level fields key, ori_caption, caption" in job.error
    assert (
        "'caption' object fields refined_caption" in job.error
        and "did you mean 'refined_caption'" in job.error
    )
    assert job.collection not in {info.name for info in store.list_collections()}  # no empty collection left
    # The right key indexes all of them.
    good = jobs.wait(jobs.submit(request.model_copy(update={"caption_key": "refined_caption"})).id, 60)
    assert good.state is JobState.SUCCEEDED and good.done == 6, good.error


def test_a_landform_folder_whose_every_image_is_skipped_fails_with_the_most_common_reason(
    store: EmbeddedStore, tmp_path: Path
) -> None:
    root = tmp_path / "landform"
    for name in ("crater", "dune"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            (root / name / f"{name}_{i}.png").write_bytes(b"")
    (root / "dune" / "notes.png").write_bytes(b"a text file with an image name")
    job = run_job(manager(store, tmp_path), TaskName.LANDFORM, root)
    assert job.state is JobState.FAILED and job.done == 0 and job.skipped == 7
    assert job.error is not None and "nothing indexed (0 of 7 items)" in job.error
    assert "most common reason (6 of 7): empty file" in job.error
    assert job.collection not in {info.name for info in store.list_collections()}

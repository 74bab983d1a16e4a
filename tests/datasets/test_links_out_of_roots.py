"""Issue 17, item 5: a symlink inside a dataset that leads out of the dataset roots is never read.

Every reader resolves what it is about to read: streams report the entry to the skip log (the
reason naming the link and its target) and go on; single inputs (ground truth, query images)
and thumbnails raise `OutsideRoots`. Links that stay inside the roots keep working.
"""

from __future__ import annotations

import io
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from marsbench.datasets.confine import Confinement, OutsideRoots
from marsbench.datasets.geo import GeoTileDataset, load_ground_truth, query_images
from marsbench.datasets.landform import LandformDataset
from marsbench.datasets.paired import PairedDataset
from marsbench.datasets.records import SkipLog
from marsbench.evaluator.core.errors import ImageUnavailable
from marsbench.evaluator.core.thumbnails import PointImages
from marsbench.schemas.jobs import JobState

VARIANT = "v"


def png(shade: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (shade, shade, shade)).save(out, format="PNG")
    return out.getvalue()


SECRET = png(250)  # the bytes outside the roots: they must never come out of a reader


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def place(tmp_path: Path) -> SimpleNamespace:
    root = tmp_path / "roots" / "data"
    root.mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.png").write_bytes(SECRET)
    (outside / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (outside / "folder").mkdir()
    (outside / "folder" / "hidden.png").write_bytes(SECRET)
    return SimpleNamespace(root=root, outside=outside, roots=[root])


def reasons(skips: SkipLog) -> dict[str, str]:
    return {item.key: item.reason for item in skips.items}


def assert_names_link(reason: str, target: Path) -> None:
    assert (
        "is a link to" in reason and str(target.resolve()) in reason and "outside the dataset roots" in reason
    )
    assert "MARSBENCH_DATASET_ROOTS" in reason


# ----------------------------------------------------------------------------- landform


def test_landform_folder_links_out_of_the_roots_are_skipped_and_never_read(place: SimpleNamespace) -> None:
    ds = place.root / "landform"
    (ds / "craters").mkdir(parents=True)
    (ds / "craters" / "ok.png").write_bytes(png(10))
    (ds / "craters" / "leak.png").symlink_to(place.outside / "secret.png")
    (ds / "craters" / "passwd.png").symlink_to(place.outside / "passwd")
    (ds / "dunes").symlink_to(place.outside / "folder")  # a whole class folder linking out
    (place.root / "shared.png").write_bytes(png(20))
    (ds / "craters" / "inside.png").symlink_to(place.root / "shared.png")  # stays inside: allowed

    reader = LandformDataset(ds, roots=place.roots)
    skips = SkipLog()
    records = list(reader.iter_records(skips))

    assert sorted(r.key for r in records) == ["craters/inside.png", "craters/ok.png"]
    assert all(r.image != SECRET and b"root:x" not in r.image for r in records)
    found = reasons(skips)
    assert_names_link(found["craters/leak.png"], place.outside / "secret.png")
    assert_names_link(found["craters/passwd.png"], place.outside / "passwd")
    assert_names_link(found["dunes"], place.outside / "folder")
    assert skips.count == 3
    with pytest.raises(OutsideRoots, match=r"leak.png is a link to"):
        reader.read_image({"name": "craters/leak.png"})
    assert reader.read_image({"name": "craters/inside.png"}) == png(20)


def parquet_shard(path: Path, shade: int, ids: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "image": [{"bytes": png(shade), "path": None} for _ in ids],
            "label": [0 for _ in ids],
            "image_id": ids,
        }
    )
    pq.write_table(table, path)


def test_landform_parquet_shard_linking_out_is_skipped_whole(place: SimpleNamespace) -> None:
    ds = place.root / "landform_pq"
    parquet_shard(ds / "data" / "train-00000-of-00002.parquet", 10, ["a", "b"])
    parquet_shard(place.outside / "stolen.parquet", 250, ["x", "y"])
    (ds / "data" / "train-00001-of-00002.parquet").symlink_to(place.outside / "stolen.parquet")

    reader = LandformDataset(ds, roots=place.roots)
    skips = SkipLog()
    assert [r.key for r in reader.iter_records(skips)] == ["a", "b"]
    why = reasons(skips)["data/train-00001-of-00002.parquet"]
    assert why.startswith("parquet file refused")
    assert_names_link(why, place.outside / "stolen.parquet")
    assert reader.count() == 2  # the refused footer is not even opened


def test_without_roots_there_is_no_boundary(place: SimpleNamespace) -> None:
    # A loopback service with no MARSBENCH_DATASET_ROOTS may read any folder: a link adds nothing.
    ds = place.root / "landform"
    (ds / "craters").mkdir(parents=True)
    (ds / "craters" / "leak.png").symlink_to(place.outside / "secret.png")
    assert [r.image for r in LandformDataset(ds).iter_records(SkipLog())] == [SECRET]


def test_a_dataset_folder_that_is_itself_a_link_out_is_refused(place: SimpleNamespace) -> None:
    (place.outside / "folder" / "cls").mkdir()
    (place.root / "escape").symlink_to(place.outside / "folder")
    with pytest.raises(OutsideRoots, match=r"escape is a link to"):
        LandformDataset(place.root / "escape", roots=place.roots)


# ----------------------------------------------------------------------------- paired


def test_paired_shard_linking_out_is_skipped_and_never_read(place: SimpleNamespace) -> None:
    ds = place.root / "paired"
    write_tar(ds / "000000.tar", {"k1.jpg": png(10), "k1.json": b'{"refined_caption": "a crater"}'})
    write_tar(place.outside / "x.tar", {"s1.jpg": SECRET, "s1.json": b'{"refined_caption": "secret"}'})
    (ds / "000001.tar").symlink_to(place.outside / "x.tar")

    reader = PairedDataset(ds, roots=place.roots)
    skips = SkipLog()
    assert [r.key for r in reader.iter_records(skips)] == ["k1"]
    assert_names_link(reasons(skips)["000001.tar"], place.outside / "x.tar")
    assert reader.units() == ["000000.tar"]
    with pytest.raises(LookupError):  # the refused shard is not one this reader looks in
        reader.read_image({"key": "s1", "shard": "000001.tar"})


# ----------------------------------------------------------------------------- geo


def geo_dataset(root: Path) -> Path:
    ds = root / "geo"
    (ds / "ground_truth").mkdir(parents=True)
    (ds / "image_queries" / "yardangs").mkdir(parents=True)
    (ds / "tiles" / VARIANT / "thumb").mkdir(parents=True)
    return ds


def test_geo_tar_shards_and_source_folders_linking_out_are_skipped(place: SimpleNamespace) -> None:
    ds = geo_dataset(place.root)
    thumb = ds / "tiles" / VARIANT / "thumb"
    write_tar(thumb / "m1" / "000000.tar", {"E1_0_N2_0.png": png(10)})
    write_tar(place.outside / "t.tar", {"E3_0_N4_0.png": SECRET})
    (thumb / "m1" / "000001.tar").symlink_to(place.outside / "t.tar")
    (thumb / "m2").symlink_to(place.outside / "folder")

    reader = GeoTileDataset(ds, VARIANT, roots=place.roots)
    skips = SkipLog()
    assert [r.key for r in reader.iter_records(skips)] == ["m1/E1_0_N2_0.png"]
    found = reasons(skips)
    assert_names_link(found["m1/000001.tar"], place.outside / "t.tar")
    assert_names_link(found["m2"], place.outside / "folder")
    assert reader.units() == ["m1/000000.tar"]


def test_geo_loose_tiles_linking_out_are_skipped_and_thumbnails_refused(place: SimpleNamespace) -> None:
    ds = geo_dataset(place.root)
    source = ds / "tiles" / VARIANT / "thumb" / "m1"
    source.mkdir()
    (source / "E1_0_N2_0.png").write_bytes(png(10))
    (source / "E3_0_N4_0.png").symlink_to(place.outside / "secret.png")

    reader = GeoTileDataset(ds, VARIANT, roots=place.roots)
    skips = SkipLog()
    assert [r.key for r in reader.iter_records(skips)] == ["m1/E1_0_N2_0.png"]
    assert_names_link(reasons(skips)["m1/E3_0_N4_0.png"], place.outside / "secret.png")
    with pytest.raises(OutsideRoots):
        reader.read_image({"name": "E3_0_N4_0.png", "unit": "m1"})


def test_geo_ground_truth_and_query_images_linking_out_are_refused(place: SimpleNamespace) -> None:
    ds = geo_dataset(place.root)
    (place.outside / "gt.csv").write_text("lon,lat\n1,2\n")
    (ds / "ground_truth" / "yardangs.csv").symlink_to(place.outside / "gt.csv")
    (ds / "image_queries" / "yardangs" / "q1.png").write_bytes(png(10))
    (ds / "image_queries" / "yardangs" / "q2.png").symlink_to(place.outside / "secret.png")

    with pytest.raises(OutsideRoots, match=r"yardangs.csv is a link to .*gt.csv"):
        load_ground_truth(ds / "ground_truth" / "yardangs.csv", SkipLog(), roots=place.roots)
    with pytest.raises(OutsideRoots, match=r"q2.png is a link to .*secret.png"):
        query_images(ds, "yardangs", roots=place.roots)


# ----------------------------------------------------------------------------- thumbnails


def test_the_thumbnail_route_refuses_a_linked_image_out_of_the_roots(place: SimpleNamespace) -> None:
    ds = place.root / "landform"
    (ds / "craters").mkdir(parents=True)
    (ds / "craters" / "ok.png").write_bytes(png(10))
    (ds / "craters" / "leak.png").symlink_to(place.outside / "secret.png")
    job = SimpleNamespace(
        task=SimpleNamespace(value="landform"),
        dataset_dir=str(ds),
        dataset_options={},
        state=JobState.SUCCEEDED,
        created_at=datetime(2026, 12, 4, tzinfo=UTC),
        updated_at=datetime(2026, 12, 4, tzinfo=UTC),
    )
    store = SimpleNamespace(retrieve=lambda collection, ids: [SimpleNamespace(payload={"name": ids[0]})])
    indexing = SimpleNamespace(jobs=lambda collection: [job])
    images = PointImages(store, indexing, dataset_roots=Confinement.of(place.roots).roots)  # type: ignore[arg-type]

    assert images.thumbnail("c", "craters/ok.png", 32, Path)[:2] == b"\xff\xd8"  # a JPEG
    with pytest.raises(ImageUnavailable, match=r"leak.png is a link to .*secret.png"):
        images.thumbnail("c", "craters/leak.png", 32, Path)

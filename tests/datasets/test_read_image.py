"""Each reader finds a stored point's image again from its payload (`read_image`), the way the
evaluator's thumbnails need it: every record round-trips to its own bytes, and a payload that names
something absent or outside the dataset is `ItemNotFound`, never a read elsewhere."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marsbench.datasets.coords import tile_name
from marsbench.datasets.geo import DEFAULT_VARIANT, GeoTileDataset
from marsbench.datasets.landform import LandformDataset
from marsbench.datasets.lookup import ItemNotFound, is_plain_name
from marsbench.datasets.paired import PairedDataset
from marsbench.datasets.records import ImageRecord, SkipLog
from marsbench.datasets.synth import SynthSummary, synthesize
from marsbench.datasets.tar_shards import MemberSpan, index_tar_members, read_member
from tests.conftest import png_bytes


def write_tar(path: Path, members: Sequence[tuple[str, bytes]], fmt: int = tarfile.USTAR_FORMAT) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def records(source: GeoTileDataset | LandformDataset | PairedDataset) -> list[ImageRecord]:
    return list(source.iter_records(SkipLog()))


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    return synthesize(tmp_path_factory.mktemp("synth"), scale="small", seed=3, image_size=32)


# ----------------------------------------------------------------------------- tar member index


def test_the_member_index_locates_every_member_by_name(tmp_path: Path) -> None:
    long_name = "deep/" * 30 + "x.png"  # beyond ustar's 100 characters: a pax or GNU long name
    members = [("a.png", b"first"), ("dir/b.json", b"{}"), (long_name, b"long"), ("a.png", b"second")]
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        shard = write_tar(tmp_path / f"{fmt}.tar", members, fmt)
        index = index_tar_members(shard)
        assert set(index) == {"a.png", "dir/b.json", long_name}
        assert read_member(shard, index["a.png"]) == b"first"  # a repeated name keeps its first copy
        assert read_member(shard, index[long_name]) == b"long"
        assert read_member(shard, index["dir/b.json"]) == b"{}"


def test_a_damaged_shard_indexes_the_members_before_the_damage(tmp_path: Path) -> None:
    shard = write_tar(tmp_path / "s.tar", [("a.png", b"x" * 600), ("b.png", b"y" * 600)])
    shard.write_bytes(shard.read_bytes()[:1700])  # cut inside b.png's data
    assert list(index_tar_members(shard)) == ["a.png"]
    with pytest.raises(OSError, match="cut short"):
        read_member(shard, MemberSpan(offset=1536, size=600))


@pytest.mark.parametrize("name", ["..", ".", "a/b.png", "..\\x.png", "x\0.png"])
def test_names_that_could_leave_a_folder_are_not_plain(name: str) -> None:
    assert not is_plain_name(name)


# ----------------------------------------------------------------------------- geo tiles


def test_geo_tar_tiles_round_trip(synth: SynthSummary) -> None:
    assert synth.geo is not None
    dataset = GeoTileDataset(synth.geo.dataset_dir)
    assert dataset.layout == "tar"
    found = records(dataset)
    assert len(found) == synth.geo.tiles
    for record in found[:: max(1, len(found) // 50)] + found[-3:]:
        assert dataset.read_image(record.payload) == record.image


def geo_loose(root: Path) -> Path:
    thumb = root / "tiles" / DEFAULT_VARIANT / "thumb"
    for folder, corners in (("ctx_a", [(1.0, 2.0), (1.2, 2.0)]), ("ctx_b", [(-3.4, 0.2)])):
        (thumb / folder).mkdir(parents=True)
        for i, (lon, lat) in enumerate(corners):
            (thumb / folder / tile_name(lon, lat)).write_bytes(png_bytes(i))
    (root / "secret.png").write_bytes(b"not for you")
    return root


def test_geo_loose_tiles_round_trip(tmp_path: Path) -> None:
    dataset = GeoTileDataset(geo_loose(tmp_path / "geo"))
    found = records(dataset)
    assert dataset.layout == "loose" and len(found) == 3
    for record in found:
        assert dataset.read_image(record.payload) == record.image


@pytest.mark.parametrize(
    "change",
    [
        {"name": "E9_0_N9_0.png"},  # not in the unit
        {"unit": "ctx_c"},  # no such unit
        {"unit": "../.."},  # units are looked up among the scanned ones, never joined as paths
        {"name": "../../../secret.png"},
        {"name": "secret.json"},  # not a tile
        {"name": None},
    ],
)
def test_geo_payloads_naming_nothing_here_are_not_found(tmp_path: Path, change: dict[str, object]) -> None:
    dataset = GeoTileDataset(geo_loose(tmp_path / "geo"))
    payload = {**records(dataset)[0].payload, **change}
    with pytest.raises(ItemNotFound):
        dataset.read_image(payload)


def test_geo_tar_tile_missing_from_its_shard_is_not_found(synth: SynthSummary) -> None:
    assert synth.geo is not None
    dataset = GeoTileDataset(synth.geo.dataset_dir)
    payload = {**records(dataset)[0].payload, "name": tile_name(170.0, 80.0)}
    with pytest.raises(ItemNotFound, match="no tile"):
        dataset.read_image(payload)


def test_a_rewritten_shard_is_indexed_again(tmp_path: Path) -> None:
    thumb = tmp_path / "geo" / "tiles" / DEFAULT_VARIANT / "thumb" / "ctx"
    first, second = tile_name(0.0, 0.0), tile_name(0.2, 0.0)
    shard = write_tar(thumb / "000000.tar", [(first, png_bytes(1))])
    dataset = GeoTileDataset(tmp_path / "geo")
    payload = records(dataset)[0].payload
    assert dataset.read_image(payload) == png_bytes(1)
    write_tar(shard, [(second, png_bytes(2)), (first, png_bytes(3, size=41))])
    assert dataset.read_image(payload) == png_bytes(3, size=41)  # not the old offsets


# ----------------------------------------------------------------------------- landform


def test_landform_folder_images_round_trip(synth: SynthSummary) -> None:
    assert synth.landform is not None
    dataset = LandformDataset(synth.landform.folders_dir)
    found = records(dataset)
    assert dataset.layout == "folders" and found
    for record in found:
        assert dataset.read_image(record.payload) == record.image


def test_landform_parquet_images_round_trip(synth: SynthSummary) -> None:
    assert synth.landform is not None
    dataset = LandformDataset(synth.landform.parquet_dir)
    found = records(dataset)
    assert dataset.layout == "parquet" and found
    for record in found:
        assert dataset.read_image(record.payload) == record.image


def write_parquet(path: Path, images: list[bytes | None], ids: dict[str, list[object]], group: int) -> None:
    cells = [{"bytes": b, "path": None} for b in images]
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    columns = {"image": pa.array(cells, type=image_type), "label": pa.array([0] * len(images))}
    columns.update({name: pa.array(values) for name, values in ids.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path, row_group_size=group)


def test_parquet_names_follow_the_readers_fallbacks_across_files_and_row_groups(tmp_path: Path) -> None:
    root = tmp_path / "landform"
    images = [png_bytes(i) for i in range(7)]
    # image_id, else id, else the global row index; a repeated name keeps its first row.
    write_parquet(
        root / "a.parquet", images[:4], {"image_id": ["x", None, "", "x"], "id": [None, 7, 0, 1]}, 3
    )
    write_parquet(root / "b.parquet", images[4:], {"image_id": [None, "y", None]}, 2)
    dataset = LandformDataset(root)
    found = {record.key: record.image for record in records(dataset)}
    assert set(found) == {"x", "7", "2", "4", "y", "6"}
    for name, image in found.items():
        assert dataset.read_image({"name": name}) == image
    assert dataset.read_image({"name": "x"}) == images[0]
    with pytest.raises(ItemNotFound):
        dataset.read_image({"name": "3"})  # row 3 is named "x" (a duplicate), not by its index


@pytest.mark.parametrize(
    "name",
    ["crater/none.png", "../dataset/crater/crater_0.png", "crater_0.png", "crater/../crater/crater_0.png"],
)
def test_landform_folder_names_outside_the_class_folders_are_not_found(
    landform_folders: Path, name: str
) -> None:
    dataset = LandformDataset(landform_folders)
    assert (
        dataset.read_image({"name": "crater/crater_0.png"})
        == (landform_folders / "crater/crater_0.png").read_bytes()
    )
    with pytest.raises(ItemNotFound):
        dataset.read_image({"name": name})


# ----------------------------------------------------------------------------- paired


def test_paired_images_round_trip(synth: SynthSummary) -> None:
    assert synth.paired is not None
    dataset = PairedDataset(synth.paired.dataset_dir)
    found = records(dataset)
    assert len(found) == synth.paired.pairs
    for record in found:
        assert dataset.read_image(record.payload) == record.image


def sample_members(key: str, image: bytes) -> Iterator[tuple[str, bytes]]:
    yield f"{key}.jpg", image
    yield f"{key}.json", b'{"refined_caption": "a crater"}'


def test_paired_payloads_naming_nothing_here_are_not_found(tmp_path: Path) -> None:
    root = tmp_path / "paired"
    write_tar(root / "000000.tar", [*sample_members("k0", png_bytes(0)), *sample_members("k1", png_bytes(1))])
    dataset = PairedDataset(root)
    assert dataset.read_image({"key": "k1", "shard": "000000.tar"}) == png_bytes(1)
    for payload in (
        {"key": "k2", "shard": "000000.tar"},
        {"key": "k0", "shard": "000001.tar"},
        {"key": "k0", "shard": "../000000.tar"},
        {"key": "k0"},
    ):
        with pytest.raises(ItemNotFound):
            dataset.read_image(payload)

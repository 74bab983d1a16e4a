"""The geo-localization reader and the tar shard reader on small fixtures built here."""

from __future__ import annotations

import inspect
import io
import logging
import tarfile
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from marsbench.datasets.coords import parse_tile_name, tile_name
from marsbench.datasets.errors import DatasetError
from marsbench.datasets.geo import (
    DEFAULT_VARIANT,
    NAME_FIELD,
    SOURCE_FIELD,
    UNIT_FIELD,
    GeoTileDataset,
    ground_truth_path,
    landforms,
    load_ground_truth,
    query_images,
    tile_lonlat,
    tile_payload,
    tile_variants,
)
from marsbench.datasets.records import ImageRecord, SkipLog
from marsbench.datasets.tar_shards import (
    ShardIssue,
    TarSample,
    end_problem,
    iter_tar_samples,
    scan_tar_members,
    split_member_name,
)

LANDFORMS = ["alluvial_fans", "glacier-like_form", "landslides", "pitted_cones", "yardangs"]


def png_bytes(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (shade, shade, shade)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_tar(path: Path, members: Sequence[tuple[str, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def thumb(root: Path, variant: str = DEFAULT_VARIANT) -> Path:
    return root / "tiles" / variant / "thumb"


def tiles(corners: Sequence[tuple[float, float]], shade: int = 10) -> list[tuple[str, bytes]]:
    return [(tile_name(lon, lat), png_bytes(shade + i)) for i, (lon, lat) in enumerate(corners)]


def read_all(
    dataset: GeoTileDataset,
    *,
    skip_units: Collection[str] = (),
    on_unit_done: Callable[[str], None] | None = None,
) -> tuple[list[ImageRecord], SkipLog]:
    skips = SkipLog()
    records = dataset.iter_records(skips, skip_units=skip_units, on_unit_done=on_unit_done)
    return list(records), skips


def reasons(skips: SkipLog) -> dict[str, str]:
    return {item.key: item.reason for item in skips.items}


def collect() -> tuple[list[ShardIssue], Callable[[ShardIssue], None]]:
    issues: list[ShardIssue] = []
    return issues, issues.append


@pytest.fixture
def tar_dataset(tmp_path: Path) -> Path:
    """Two sources: A with two shards, B with one."""
    root = tmp_path / "dataset"
    write_tar(thumb(root) / "srcA" / "000000.tar", tiles([(12.4, -3.2), (12.6, -3.2)]))
    write_tar(thumb(root) / "srcA" / "000001.tar", tiles([(-12.4, 3.2)], shade=50))
    write_tar(thumb(root) / "srcB" / "000000.tar", tiles([(0.0, 0.0), (-0.2, -0.4)], shade=90))
    return root


# ----------------------------------------------------------------------------- tar shards


@pytest.mark.parametrize(
    ("name", "split"),
    [
        ("E1_0_N2_0.png", ("E1_0_N2_0", "png")),
        ("a/b/x.seg.png", ("a/b/x", "seg.png")),
        ("./x.json", ("./x", "json")),
        ("x", None),
        ("x.", None),
        ("._x.png", None),
        ("dir/.hidden", None),
    ],
)
def test_split_member_name(name: str, split: tuple[str, str] | None) -> None:
    assert split_member_name(name) == split


def test_samples_group_consecutive_members_by_key(tmp_path: Path) -> None:
    shard = write_tar(
        tmp_path / "000000.tar",
        [
            ("a.jpg", b"A"),
            ("a.json", b"{}"),
            ("sub/a.txt", b"other key"),
            ("b.png", b"B"),
            ("b.png", b"B again"),
            ("a.txt", b"a returns"),
        ],
    )
    issues, report = collect()
    samples = list(iter_tar_samples(shard, report, shard="s/000000.tar"))
    assert samples == [
        TarSample("a", {"jpg": b"A", "json": b"{}"}),
        TarSample("sub/a", {"txt": b"other key"}),
        TarSample("b", {"png": b"B"}),
        TarSample("a", {"txt": b"a returns"}),  # not adjacent: a new sample, as in WebDataset
    ]
    assert [(i.shard, i.fatal) for i in issues] == [("s/000000.tar", False)]
    assert "repeats a part" in issues[0].reason


def test_directories_links_and_names_without_extension(tmp_path: Path) -> None:
    path = tmp_path / "mixed.tar"
    with tarfile.open(path, "w") as tar:
        folder = tarfile.TarInfo("folder")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        link = tarfile.TarInfo("folder/link.png")
        link.type = tarfile.SYMTYPE
        link.linkname = "x.png"
        tar.addfile(link)
        for name, data in [("folder/README", b"r"), ("folder/x.png", b"X")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    issues, report = collect()
    assert list(iter_tar_samples(path, report)) == [TarSample("folder/x", {"png": b"X"})]
    assert [i.fatal for i in issues] == [False, False]
    assert "not a regular file" in issues[0].reason and "no extension" in issues[1].reason
    assert scan_tar_members(path).members == [("folder/README", 1), ("folder/x.png", 1)]


def test_an_empty_archive_is_fine(tmp_path: Path) -> None:
    shard = write_tar(tmp_path / "empty.tar", [])
    issues, report = collect()
    assert list(iter_tar_samples(shard, report)) == []
    assert issues == []
    assert scan_tar_members(shard).problem is None


def members_of(count: int) -> list[tuple[str, bytes]]:
    return [(f"k{i}.png", bytes([i + 1]) * 3000) for i in range(count)]


@pytest.mark.parametrize(
    ("cut", "yielded", "reason", "scan_problem"),
    [
        # inside the second member's data
        (512 + 3000 + 512 + 100, 1, "unexpected end of data", "unexpected end of data in member 'k1.png'"),
        # exactly at a member boundary
        (512 + 3072, 1, "without an end-of-archive block", "without an end-of-archive block"),
        (512 + 3072 + 100, 1, "truncated member header", "truncated member header at byte 3584"),
        (100, 0, "truncated header", "truncated member header at byte 0"),
        (0, 0, "empty file", "empty file"),
    ],
)
def test_a_truncated_shard_yields_what_it_could_read_and_reports_once(
    tmp_path: Path, cut: int, yielded: int, reason: str, scan_problem: str
) -> None:
    whole = write_tar(tmp_path / "whole.tar", members_of(3)).read_bytes()
    shard = tmp_path / "cut.tar"
    shard.write_bytes(whole[:cut])
    issues, report = collect()
    samples = list(iter_tar_samples(shard, report, shard="cut.tar"))
    assert [s.key for s in samples] == [f"k{i}" for i in range(yielded)]
    assert [s.parts for s in samples] == [{"png": d} for _, d in members_of(yielded)]
    assert len(issues) == 1 and issues[0].fatal and issues[0].shard == "cut.tar"
    assert reason in issues[0].reason and f"read {yielded} sample(s)" in issues[0].reason
    listing = scan_tar_members(shard)
    assert scan_problem in (listing.problem or "")
    assert len(listing.members) == yielded


def test_garbage_after_a_member_is_reported_as_corrupt(tmp_path: Path) -> None:
    whole = write_tar(tmp_path / "whole.tar", members_of(2)).read_bytes()
    shard = tmp_path / "bad.tar"
    shard.write_bytes(whole[: 512 + 3072] + b"\x07" * 1024 + whole[512 + 3072 + 1024 :])
    issues, report = collect()
    assert [s.key for s in iter_tar_samples(shard, report)] == ["k0"]
    assert len(issues) == 1 and "invalid member header" in issues[0].reason


def test_a_file_that_is_no_tar_is_reported(tmp_path: Path) -> None:
    shard = tmp_path / "nope.tar"
    shard.write_bytes(png_bytes(1) * 20)
    issues, report = collect()
    assert list(iter_tar_samples(shard, report)) == []
    assert len(issues) == 1 and issues[0].fatal


def test_end_problem() -> None:
    assert end_problem(bytes(512), 0) is None
    assert end_problem(b"", 1024) is not None and "1024" in (end_problem(b"", 1024) or "")
    assert "truncated" in (end_problem(b"\0" * 10, 0) or "")
    assert "corrupt" in (end_problem(b"\1" * 512, 0) or "")


@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_the_header_scan_lists_what_tarfile_lists(tmp_path: Path, tar_format: int) -> None:
    deep = "/".join(["folder"] * 12) + "/E1_0_N1_0.png"  # over 100 characters: a prefix or a long name
    names = ["E0_0_N0_0.png", deep, "x" * 96 + ".png"]  # 100: a name field without NUL
    if tar_format != tarfile.USTAR_FORMAT:
        names += ["y" * 150 + ".png", "Ünïcode.png"]
    path = tmp_path / "formats.tar"
    with tarfile.open(path, "w", format=tar_format) as tar:
        folder = tarfile.TarInfo("folder")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for i, name in enumerate(names):
            info = tarfile.TarInfo(name)
            info.size = 700 * i
            tar.addfile(info, io.BytesIO(bytes(info.size)))
        link = tarfile.TarInfo("hard.png")
        link.type = tarfile.LNKTYPE
        link.linkname = names[0]
        tar.addfile(link)
    with tarfile.open(path) as tar:
        expected = [(m.name, m.size) for m in tar.getmembers() if m.isfile()]
    listing = scan_tar_members(path)
    assert listing.problem is None
    assert listing.members == expected
    assert [name for name, _ in listing.members] == names


def test_scan_reads_headers_only(tmp_path: Path) -> None:
    shard = write_tar(tmp_path / "s.tar", members_of(3))
    listing = scan_tar_members(shard)
    assert listing.members == [("k0.png", 3000), ("k1.png", 3000), ("k2.png", 3000)]
    assert listing.problem is None


# ----------------------------------------------------------------------------- tiles: tar layout


def test_tar_records_keys_payloads_and_order(tar_dataset: Path) -> None:
    dataset = GeoTileDataset(tar_dataset)
    assert dataset.layout == "tar"
    assert dataset.units() == ["srcA/000000.tar", "srcA/000001.tar", "srcB/000000.tar"]
    records, skips = read_all(dataset)
    assert skips.count == 0
    assert [r.key for r in records] == [
        "srcA/E12_4_N_3_2.png",
        "srcA/E12_6_N_3_2.png",
        "srcA/E_12_4_N3_2.png",
        "srcB/E0_0_N0_0.png",
        "srcB/E_0_2_N_0_4.png",
    ]
    assert records[0].payload == tile_payload("E12_4_N_3_2.png", "srcA", "srcA/000000.tar", 12.4, -3.2)
    assert tile_lonlat(records[2].payload) == (-12.4, 3.2)
    assert records[2].payload[UNIT_FIELD] == "srcA/000001.tar"
    assert records[0].image == png_bytes(10)
    for record in records:
        assert parse_tile_name(record.payload[NAME_FIELD]) == tile_lonlat(record.payload)
    assert dataset.count() == 5


def test_iter_records_is_lazy(tar_dataset: Path) -> None:
    assert inspect.isgenerator(GeoTileDataset(tar_dataset).iter_records(SkipLog()))


def test_bad_members_are_skipped_by_name_and_non_images_ignored(tmp_path: Path) -> None:
    root = tmp_path / "dataset"
    write_tar(
        thumb(root) / "src" / "000000.tar",
        [
            ("E1_0_N1_0.png", b"not a png at all"),  # the encoder decides: still yielded
            ("E1_0_N1_0.json", b"{}"),  # a sidecar of the same sample: ignored
            ("tile_7.png", png_bytes(1)),
            ("E1_2_N1_0.PNG", png_bytes(2)),
            ("E1_4_N1_0.jpg", png_bytes(3)),
            ("E1_6_N1_0.png", b""),
            ("notes.txt", b"hello"),
            ("E1_0_N1_0.png", png_bytes(4)),  # the same key again
            ("E1_8_N1_0.png", png_bytes(5)),
        ],
    )
    dataset = GeoTileDataset(root)
    records, skips = read_all(dataset)
    assert [r.key for r in records] == ["src/E1_0_N1_0.png", "src/E1_8_N1_0.png"]
    assert records[0].image == b"not a png at all"
    got = reasons(skips)
    assert set(got) == {
        "src/tile_7.png",
        "src/E1_2_N1_0.PNG",
        "src/E1_4_N1_0.jpg",
        "src/E1_6_N1_0.png",
        "src/E1_0_N1_0.png",
    }
    assert "does not match" in got["src/tile_7.png"]
    assert "does not match" in got["src/E1_2_N1_0.PNG"]
    assert "empty" in got["src/E1_6_N1_0.png"]
    assert "duplicate" in got["src/E1_0_N1_0.png"]
    # Candidates are image-named members; .json and .txt are not tiles.
    assert dataset.count() == 7 == len(records) + skips.count


def test_the_same_tile_name_in_two_sources_is_two_tiles(tmp_path: Path) -> None:
    root = tmp_path / "dataset"
    write_tar(thumb(root) / "a" / "000000.tar", tiles([(1.0, 1.0)]))
    write_tar(thumb(root) / "b" / "000000.tar", tiles([(1.0, 1.0)]))
    records, skips = read_all(GeoTileDataset(root))
    assert [r.key for r in records] == ["a/E1_0_N1_0.png", "b/E1_0_N1_0.png"]
    assert skips.count == 0


def test_a_truncated_shard_is_reported_and_the_job_goes_on(tar_dataset: Path) -> None:
    shard = thumb(tar_dataset) / "srcA" / "000000.tar"
    data = shard.read_bytes()
    first_member = 512 + ((len(png_bytes(10)) + 511) // 512) * 512
    shard.write_bytes(data[: first_member + 512 + 20])  # into the second tile's bytes
    done: list[str] = []
    records, skips = read_all(GeoTileDataset(tar_dataset), on_unit_done=done.append)
    assert [r.key for r in records] == [
        "srcA/E12_4_N_3_2.png",
        "srcA/E_12_4_N3_2.png",
        "srcB/E0_0_N0_0.png",
        "srcB/E_0_2_N_0_4.png",
    ]
    got = reasons(skips)
    assert list(got) == ["srcA/000000.tar"]
    assert "unexpected end of data" in got["srcA/000000.tar"]
    assert done == ["srcA/000001.tar", "srcB/000000.tar"]  # the failed unit is retried on resume


def test_units_done_and_skipped(tar_dataset: Path) -> None:
    dataset = GeoTileDataset(tar_dataset)
    events: list[str] = []
    skips = SkipLog()
    for record in dataset.iter_records(
        skips,
        skip_units={"srcA/000001.tar", "no/such.tar"},
        on_unit_done=lambda u: events.append(f"done {u}"),
    ):
        events.append(record.key)
    assert events == [
        "srcA/E12_4_N_3_2.png",
        "srcA/E12_6_N_3_2.png",
        "done srcA/000000.tar",
        "srcB/E0_0_N0_0.png",
        "srcB/E_0_2_N_0_4.png",
        "done srcB/000000.tar",
    ]


def test_a_unit_is_done_only_after_its_last_record_was_taken(tar_dataset: Path) -> None:
    done: list[str] = []
    records = GeoTileDataset(tar_dataset).iter_records(SkipLog(), on_unit_done=done.append)
    next(records)
    next(records)  # the last record of srcA/000000.tar: handed out, not yet known to be last
    assert done == []
    next(records)
    assert done == ["srcA/000000.tar"]
    assert inspect.isgenerator(records)
    records.close()
    assert done == ["srcA/000000.tar"]


def test_empty_shards_are_units_that_finish(tmp_path: Path) -> None:
    root = tmp_path / "dataset"
    write_tar(thumb(root) / "a" / "000000.tar", [])
    write_tar(thumb(root) / "a" / "000001.tar", tiles([(2.0, 2.0)]))
    done: list[str] = []
    records, skips = read_all(GeoTileDataset(root), on_unit_done=done.append)
    assert len(records) == 1 and skips.count == 0
    assert done == ["a/000000.tar", "a/000001.tar"]


def test_resuming_keeps_the_duplicate_decisions_of_a_full_run(tmp_path: Path) -> None:
    root = tmp_path / "dataset"
    write_tar(thumb(root) / "a" / "000000.tar", tiles([(1.0, 1.0)], shade=1))
    write_tar(thumb(root) / "a" / "000001.tar", tiles([(1.0, 1.0), (1.2, 1.0)], shade=100))
    dataset = GeoTileDataset(root)
    full, _ = read_all(dataset)
    resumed, skips = read_all(dataset, skip_units=["a/000000.tar"])
    assert [r.key for r in full] == ["a/E1_0_N1_0.png", "a/E1_2_N1_0.png"]
    assert full[0].image == png_bytes(1)
    # The duplicate in the second shard must not replace the tile the first run stored.
    assert [r.key for r in resumed] == ["a/E1_2_N1_0.png"]
    assert "duplicate" in reasons(skips)["a/E1_0_N1_0.png"]


def test_loose_images_beside_shards_are_reported_not_read(tar_dataset: Path) -> None:
    stray = thumb(tar_dataset) / "srcC" / "E5_0_N5_0.png"
    stray.parent.mkdir()
    stray.write_bytes(png_bytes(3))
    dataset = GeoTileDataset(tar_dataset)
    assert dataset.layout == "tar"
    records, skips = read_all(dataset)
    assert len(records) == 5
    assert "beside tar shards" in reasons(skips)["srcC/E5_0_N5_0.png"]
    assert dataset.count() == 6


def test_fingerprint_follows_shard_names_and_sizes(tar_dataset: Path) -> None:
    first = GeoTileDataset(tar_dataset).fingerprint()
    assert first == GeoTileDataset(tar_dataset).fingerprint()
    assert len(first) == 16 and int(first, 16) >= 0
    # Tar files are padded to 10 KiB records: grow one past a record boundary.
    write_tar(thumb(tar_dataset) / "srcB" / "000000.tar", [*tiles([(0.0, 0.0)]), ("big.bin", bytes(20_000))])
    second = GeoTileDataset(tar_dataset).fingerprint()
    assert second != first
    (thumb(tar_dataset) / "srcB" / "000000.tar").rename(thumb(tar_dataset) / "srcB" / "000009.tar")
    assert GeoTileDataset(tar_dataset).fingerprint() not in {first, second}


# ----------------------------------------------------------------------------- tiles: loose layout


def test_loose_layout(tmp_path: Path) -> None:
    root = tmp_path / "dataset"
    for source, corners in {"srcB": [(3.0, -1.0)], "srcA": [(1.0, 1.0), (-1.0, 1.0)]}.items():
        folder = thumb(root) / source
        folder.mkdir(parents=True)
        for name, data in tiles(corners):
            (folder / name).write_bytes(data)
    (thumb(root) / "srcA" / "readme.txt").write_text("not a tile")
    (thumb(root) / "srcA" / "bad_name.png").write_bytes(png_bytes(1))
    dataset = GeoTileDataset(root)
    assert dataset.layout == "loose"
    assert dataset.units() == ["srcA", "srcB"]
    assert dataset.count() == 4
    done: list[str] = []
    records, skips = read_all(dataset, on_unit_done=done.append)
    assert [r.key for r in records] == ["srcA/E1_0_N1_0.png", "srcA/E_1_0_N1_0.png", "srcB/E3_0_N_1_0.png"]
    assert records[1].payload == tile_payload("E_1_0_N1_0.png", "srcA", "srcA", -1.0, 1.0)
    assert list(reasons(skips)) == ["srcA/bad_name.png"]
    assert done == ["srcA", "srcB"]
    resumed, _ = read_all(dataset, skip_units=["srcA"])
    assert [r.key for r in resumed] == ["srcB/E3_0_N_1_0.png"]
    before = dataset.fingerprint()
    (thumb(root) / "srcB" / "E3_0_N_1_0.png").write_bytes(png_bytes(1) * 2)
    assert GeoTileDataset(root).fingerprint() != before


def test_loose_images_directly_in_thumb(tmp_path: Path) -> None:
    root = tmp_path / "dataset"
    thumb(root).mkdir(parents=True)
    (thumb(root) / "E1_0_N1_0.png").write_bytes(png_bytes(1))
    records, _ = read_all(GeoTileDataset(root))
    assert [(r.key, r.payload["source"], r.payload["unit"]) for r in records] == [("E1_0_N1_0.png", "", ".")]


def test_an_unreadable_loose_file_is_skipped_and_its_unit_not_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "dataset"
    folder = thumb(root) / "src"
    folder.mkdir(parents=True)
    for name, data in tiles([(1.0, 1.0), (2.0, 2.0)]):
        (folder / name).write_bytes(data)
    real_read_bytes = Path.read_bytes

    def read_bytes(path: Path) -> bytes:
        if path.name == "E1_0_N1_0.png":
            raise PermissionError(13, "Permission denied")
        return real_read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    done: list[str] = []
    records, skips = read_all(GeoTileDataset(root), on_unit_done=done.append)
    assert [r.key for r in records] == ["src/E2_0_N2_0.png"]
    assert reasons(skips)["src/E1_0_N1_0.png"] == "unreadable file (Permission denied)"
    assert done == []


# ----------------------------------------------------------------------------- variants and errors


def test_variants(tmp_path: Path) -> None:
    root = tmp_path / "dataset"
    write_tar(thumb(root, "image_size_256_delta_0.1") / "a" / "000000.tar", tiles([(1.0, 1.0)]))
    (root / "tiles" / "image_size_512_delta_0.2").mkdir(parents=True)  # no thumb/: not a variant
    assert tile_variants(root) == ["image_size_256_delta_0.1"]
    with pytest.raises(DatasetError, match=r"image_size_512_delta_0\.2.*variants found: image_size_256"):
        GeoTileDataset(root)
    dataset = GeoTileDataset(root, variant="image_size_256_delta_0.1")
    assert dataset.variants() == ["image_size_256_delta_0.1"]
    assert dataset.count() == 1


def test_missing_folders_and_empty_thumb(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        GeoTileDataset(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="variants found: none"):
        GeoTileDataset(tmp_path)
    thumb(tmp_path).mkdir(parents=True)
    with pytest.raises(DatasetError, match="no tiles"):
        GeoTileDataset(tmp_path)


# ----------------------------------------------------------------------------- ground truth


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


def test_ground_truth_with_extra_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "gt.csv", "name,lat,lon,diameter\nx,-3.25,12.5,4\ny,80,-180,\n")
    points = load_ground_truth(path, SkipLog())
    assert points.dtype == np.float64 and points.shape == (2, 2)
    assert points.tolist() == [[12.5, -3.25], [-180.0, 80.0]]


def test_ground_truth_bad_rows_are_skipped_with_line_numbers(tmp_path: Path) -> None:
    text = (
        'lon,lat,note\n1,2,ok\n,3,empty lon\nabc,4,text\n5,nan,nan\n\n6,7,"two\nlines"\n8\n9 , 10 ,spaces\n'
    )
    path = write_csv(tmp_path / "gt.csv", text)
    skips = SkipLog()
    points = load_ground_truth(path, skips)
    assert points.tolist() == [[1.0, 2.0], [6.0, 7.0], [9.0, 10.0]]
    got = reasons(skips)
    assert list(got) == ["gt.csv:line 3", "gt.csv:line 4", "gt.csv:line 5", "gt.csv:line 9"]
    assert got["gt.csv:line 3"] == "empty lon"
    assert "'abc' is not a number" in got["gt.csv:line 4"]
    assert "not finite" in got["gt.csv:line 5"]
    assert got["gt.csv:line 9"] == "empty lat"


def test_ground_truth_without_a_log_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_csv(tmp_path / "gt.csv", "lon,lat\n1,2\nx,3\n")
    with caplog.at_level(logging.WARNING, logger="marsbench.datasets.geo"):
        assert load_ground_truth(path).tolist() == [[1.0, 2.0]]
    assert "skipped 1 unusable row" in caplog.text and "gt.csv:line 3" in caplog.text


def test_ground_truth_missing_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "gt.csv", "Lon, lat,x\n1,2,3\n")
    with pytest.raises(DatasetError, match=r"gt\.csv lacks the column") as info:
        load_ground_truth(path, SkipLog())
    message = str(info.value)
    assert "lon, lat;" in message and "['Lon', ' lat', 'x']" in message
    with pytest.raises(DatasetError, match="lacks the column"):
        load_ground_truth(write_csv(tmp_path / "empty.csv", ""), SkipLog())


def test_ground_truth_edge_cases(tmp_path: Path) -> None:
    bom = write_csv(tmp_path / "bom.csv", "lon,lat\n1.5,-2\n", encoding="utf-8-sig")
    assert load_ground_truth(bom, SkipLog()).tolist() == [[1.5, -2.0]]
    header_only = write_csv(tmp_path / "h.csv", "lon,lat\n")
    assert load_ground_truth(header_only, SkipLog()).shape == (0, 2)
    with pytest.raises(DatasetError, match="does not exist"):
        load_ground_truth(tmp_path / "missing.csv", SkipLog())


def test_landforms_and_query_images(tmp_path: Path) -> None:
    root = tmp_path / "dataset"
    for name in reversed(LANDFORMS):
        write_csv(ground_truth_path(root, name), "lon,lat\n0,0\n")
    write_csv(root / "ground_truth" / "README.md", "not a catalogue")
    assert landforms(root) == LANDFORMS
    folder = root / "image_queries" / "yardangs"
    folder.mkdir(parents=True)
    for name in ["b.png", "a.PNG", "c.jpg", "d.tif", "notes.txt"]:
        (folder / name).write_bytes(name.encode())
    (folder / "e.png").mkdir()
    got = query_images(root, "yardangs")
    assert [name for name, _ in got] == ["a.PNG", "b.png", "c.jpg", "d.tif"]
    assert got[1] == ("b.png", b"b.png")
    (root / "image_queries" / "landslides").mkdir()
    assert query_images(root, "landslides") == []
    with pytest.raises(DatasetError, match="pitted_cones"):
        query_images(root, "pitted_cones")
    with pytest.raises(DatasetError, match="ground_truth"):
        landforms(tmp_path)


# ----------------------------------------------------------------------------- synthetic data


def test_reads_the_synthetic_geo_dataset(tmp_path: Path) -> None:
    synth = pytest.importorskip("marsbench.datasets.synth")
    summary = synth.synthesize(tmp_path, scale="small", seed=3, tasks=["geo"], image_size=32)
    root = summary.geo.dataset_dir
    dataset = GeoTileDataset(root)
    assert dataset.layout == "tar"
    assert dataset.count() == summary.geo.tiles
    assert len(dataset.units()) == summary.geo.shards
    done: list[str] = []
    records, skips = read_all(dataset, on_unit_done=done.append)
    assert skips.count == 0 and len(records) == summary.geo.tiles
    assert done == dataset.units()
    assert {r.payload[SOURCE_FIELD] for r in records} == set(summary.geo.sources)
    spec = synth.SCALES["small"]
    (west, east), (south, north) = spec.geo_lon_range, spec.geo_lat_range
    corners = {tile_lonlat(r.payload) for r in records}
    expected = {
        (lon / 10, lat / 10)
        for lon in range(west * 10, east * 10, 2)
        for lat in range(south * 10, north * 10, 2)
    }
    assert corners == expected
    assert all(r.image.startswith(b"\x89PNG") for r in records)
    assert landforms(root) == sorted(synth.GEO_LANDFORMS)
    for name in landforms(root):
        points = load_ground_truth(ground_truth_path(root, name), skips)
        assert points.shape == (summary.geo.points[name], 2)
        # Every catalogue point lies in some tile of the set.
        corner = np.floor(points * 5 + 1e-9) / 5
        assert all((round(lon, 1), round(lat, 1)) in corners for lon, lat in corner.tolist())
        assert len(query_images(root, name)) == summary.geo.query_images[name]
    assert skips.count == 0

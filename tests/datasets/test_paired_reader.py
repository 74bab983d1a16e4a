"""The paired image-text reader on small shards built here, and on the synthetic paired set."""

from __future__ import annotations

import inspect
import io
import json
import tarfile
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from marsbench.datasets.errors import DatasetError
from marsbench.datasets.paired import (
    CAPTION_KEYS,
    DEFAULT_CAPTION_KEY,
    CaptionError,
    IncompleteSample,
    PairedDataset,
    PairedSample,
    caption_from_json,
    caption_from_json_bytes,
    caption_from_text,
    pair_members,
    split_part_name,
)
from marsbench.datasets.records import ImageRecord, SkipLog

Members = Sequence[tuple[str, bytes]]


def jpeg_bytes(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (shade, shade, shade)).save(buffer, format="JPEG")
    return buffer.getvalue()


def png_bytes(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (shade, shade, shade)).save(buffer, format="PNG")
    return buffer.getvalue()


def meta(key: str, **fields: Any) -> bytes:
    """img2dataset's JSON: its own `key`, then the captions as top-level fields."""
    return json.dumps({"key": key, "status": "success", **fields}).encode()


def pair(key: str, shade: int = 10, **captions: str) -> list[tuple[str, bytes]]:
    fields = captions or {"ori_caption": f"ori {key}", "refined_caption": f"refined {key}"}
    return [(f"{key}.jpg", jpeg_bytes(shade)), (f"{key}.json", meta(key, **fields))]


def write_tar(path: Path, members: Members) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def read_all(
    dataset: PairedDataset,
    *,
    verify: bool = False,
    skip_units: Collection[str] = (),
    on_unit_done: Any = None,
) -> tuple[list[ImageRecord], SkipLog]:
    skips = SkipLog()
    records = list(
        dataset.iter_records(skips, verify=verify, skip_units=skip_units, on_unit_done=on_unit_done)
    )
    return records, skips


def reasons(skips: SkipLog) -> dict[str, str]:
    return {item.key: item.reason for item in skips.items}


def paired(members: Members, caption_key: str = DEFAULT_CAPTION_KEY, **kw: Any) -> list[Any]:
    return list(pair_members(members, caption_key, **kw))


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    root = tmp_path / "dataset"
    write_tar(root / "000000.tar", [*pair("000000000", 1), *pair("000000001", 2)])
    write_tar(root / "000001.tar", [*pair("000010000", 3)])
    (root / "mars_vl_pairs.tsv").write_text("url\tori_caption\trefined_caption\tkey\n")
    return root


# ----------------------------------------------------------------------------- caption rules


@pytest.mark.parametrize("key", CAPTION_KEYS)
def test_the_caption_key_names_a_top_level_field(key: str) -> None:
    document = {k: f"text of {k}" for k in CAPTION_KEYS}
    assert caption_from_json(document, key) == f"text of {key}"


def test_the_top_level_field_wins_over_the_caption_object() -> None:
    document = {"refined_caption": "top", "caption": {"refined_caption": "nested"}}
    assert caption_from_json(document, "refined_caption") == "top"


@pytest.mark.parametrize("top", [None, "", "absent"])
def test_an_empty_or_missing_top_level_field_falls_back_to_the_caption_object(top: str | None) -> None:
    document: dict[str, Any] = {"caption": {"ori_caption": "nested ori", "refined_caption": "nested"}}
    if top != "absent":
        document["refined_caption"] = top
    assert caption_from_json(document, "refined_caption") == "nested"
    assert caption_from_json(document, "ori_caption") == "nested ori"


def test_a_caption_object_without_the_key_is_no_caption() -> None:
    with pytest.raises(CaptionError, match="'qwen3_fused_caption' at top level or in the 'caption' object"):
        caption_from_json({"caption": {"refined_caption": "x"}}, "qwen3_fused_caption")
    with pytest.raises(CaptionError):
        caption_from_json({"caption": {"refined_caption": ""}}, "refined_caption")


def test_a_plain_caption_string_serves_only_the_key_caption() -> None:
    assert caption_from_json({"caption": "plain"}, "caption") == "plain"
    with pytest.raises(CaptionError, match="plain text"):
        caption_from_json({"caption": "plain"}, "refined_caption")
    with pytest.raises(CaptionError):
        caption_from_json({"caption": ""}, "caption")


@pytest.mark.parametrize(
    ("document", "match"),
    [
        ({"key": "1", "url": "u"}, "no 'refined_caption' field and no 'caption' field"),
        (["refined_caption"], "list, not an object"),
        ("refined_caption", "str, not an object"),
        ({"refined_caption": ["a list"]}, "'refined_caption' is a list, not text"),
        ({"caption": {"refined_caption": 3}}, "'caption.refined_caption' is a int, not text"),
        ({"caption": 7}, "no 'refined_caption' field"),
    ],
)
def test_documents_without_a_usable_caption(document: object, match: str) -> None:
    with pytest.raises(CaptionError, match=match):
        caption_from_json(document, "refined_caption")


def test_json_bytes_are_decoded_like_json_load_on_a_binary_file() -> None:
    document = {"refined_caption": "Valles Marineris, é"}
    for encoding in ("utf-8", "utf-16", "utf-32"):
        data = json.dumps(document, ensure_ascii=False).encode(encoding)
        assert caption_from_json_bytes(data, "refined_caption") == "Valles Marineris, é"
    for bad in (b"", b"{not json", b'{"refined_caption": "\xff"}'):
        with pytest.raises(CaptionError, match="unreadable JSON"):
            caption_from_json_bytes(bad, "refined_caption")


def test_json_captions_are_kept_as_written() -> None:
    assert caption_from_json({"refined_caption": "  padded \n"}, "refined_caption") == "  padded \n"


def test_text_captions_are_stripped_and_bad_bytes_dropped() -> None:
    assert caption_from_text(b"  a dune field\n") == "a dune field"
    assert caption_from_text(b"ab\xffc") == "abc"
    assert caption_from_text(b" \n\t") is None
    assert caption_from_text(b"") is None


@pytest.mark.parametrize(
    ("name", "split"),
    [
        ("000000001.jpg", ("000000001", ".jpg")),
        ("a/b/x.JPEG", ("a/b/x", ".jpeg")),
        ("x.seg.png", ("x.seg", ".png")),  # the last dot, unlike WebDataset's first
        ("._x.png", ("._x", ".png")),
        ("README", ("README", "")),
        (".hidden", (".hidden", "")),
    ],
)
def test_split_part_name(name: str, split: tuple[str, str]) -> None:
    assert split_part_name(name) == split


# ----------------------------------------------------------------------------- pairing


def test_pairs_come_out_when_they_complete() -> None:
    members = [
        ("a.json", meta("a", refined_caption="A")),
        ("b.jpg", jpeg_bytes(1)),
        ("b.json", meta("b", refined_caption="B")),
        ("a.jpg", jpeg_bytes(2)),  # completes "a" after "b"
    ]
    out = paired(members)
    assert [(s.key, s.caption, s.caption_source) for s in out] == [("b", "B", "json"), ("a", "A", "json")]
    assert out[1].image == jpeg_bytes(2)


def test_the_text_member_is_the_fallback_caption() -> None:
    members = [
        ("a.jpg", jpeg_bytes(1)),
        ("a.json", meta("a", ori_caption="only ori")),
        ("a.txt", b" from the txt \n"),
    ]
    out = paired(members)
    assert out == [PairedSample(key="a", image=jpeg_bytes(1), caption="from the txt", caption_source="txt")]


def test_member_order_decides_between_json_and_text_as_in_the_reference() -> None:
    json_first = [("a.jpg", b"I"), ("a.json", meta("a", refined_caption="J")), ("a.txt", b"T")]
    txt_first = [("a.jpg", b"I"), ("a.txt", b"T"), ("a.json", meta("a", refined_caption="J"))]
    json_replaces_txt = [("a.txt", b"T"), ("a.json", meta("a", refined_caption="J")), ("a.jpg", b"I")]
    txt_keeps_json = [("a.json", meta("a", refined_caption="J")), ("a.txt", b"T"), ("a.jpg", b"I")]
    bad_json_keeps_txt = [("a.txt", b"T"), ("a.json", b"{oops"), ("a.jpg", b"I")]
    assert [s.caption for s in paired(json_first)] == ["J"]  # the trailing .txt is ignored
    assert [s.caption for s in paired(txt_first)] == ["T"]  # emitted before the JSON arrives
    assert [s.caption for s in paired(json_replaces_txt)] == ["J"]
    assert [s.caption for s in paired(txt_keeps_json)] == ["J"]
    assert [s.caption for s in paired(bad_json_keeps_txt)] == ["T"]


def test_a_later_image_replaces_an_earlier_one_until_the_pair_completes() -> None:
    members = [
        ("a.jpg", b"first"),
        ("a.png", b"second"),
        ("a.json", meta("a", refined_caption="A")),
        ("a.jpeg", b"after"),  # trails the emitted pair: ignored
    ]
    assert paired(members) == [PairedSample("a", b"second", "A", "json")]


def test_extensions_are_compared_lower_cased_and_others_ignored() -> None:
    members = [
        ("a.PNG", b"png"),
        ("a.webp", b"webp"),
        ("a.cls", b"3"),
        ("a.Json", meta("a", refined_caption="A")),
        ("b.webp", b"webp"),
        ("b.json", meta("b", refined_caption="B")),
    ]
    out = paired(members)
    assert out[0] == PairedSample("a", b"png", "A", "json")
    assert out[1:] == [IncompleteSample("b", "no image")]


def test_incomplete_samples_are_reported_in_order_of_first_appearance() -> None:
    members = [
        ("c.json", meta("c", ori_caption="no refined")),
        ("a.jpg", b"I"),
        ("b.json", meta("b", refined_caption="B")),
        ("d.jpg", b""),
        ("d.txt", b"D"),
        ("e.txt", b"   "),
    ]
    out = paired(members)
    assert [type(s) for s in out] == [IncompleteSample] * 5
    got = {s.key: s.reason for s in out}
    assert list(got) == ["c", "a", "b", "d", "e"]
    assert got["c"].startswith("no image; no caption (no 'refined_caption' field")
    assert got["a"] == "no caption"
    assert got["b"] == "no image"
    assert got["d"] == "no image (empty image member)"
    assert got["e"] == "no image; no caption"


def test_an_image_the_check_rejects_is_no_image_and_a_later_one_still_counts() -> None:
    def check(data: bytes) -> str | None:
        return "corrupt" if data == b"bad" else None

    members = [("a.jpg", b"bad"), ("a.json", meta("a", refined_caption="A")), ("b.jpg", b"bad")]
    members += [("b.png", b"good"), ("b.json", meta("b", refined_caption="B"))]
    out = paired(members, check_image=check)
    assert out == [PairedSample("b", b"good", "B", "json"), IncompleteSample("a", "no image (corrupt)")]


def test_a_repeated_pair_within_a_shard_is_emitted_twice_like_the_reference() -> None:
    members = [*pair("a", 1), ("b.jpg", b"x"), *pair("a", 2)]
    keys = [s.key for s in paired(members) if isinstance(s, PairedSample)]
    assert keys == ["a", "a"]


# ----------------------------------------------------------------------------- the dataset


def test_records_keys_payloads_units_and_order(dataset_dir: Path) -> None:
    dataset = PairedDataset(dataset_dir)
    assert dataset.caption_key == "refined_caption"
    assert dataset.units() == ["000000.tar", "000001.tar"]
    assert dataset.count() == 3
    assert dataset.tsv_path == dataset_dir / "mars_vl_pairs.tsv"
    records, skips = read_all(dataset)
    assert skips.count == 0
    assert [r.key for r in records] == ["000000000", "000000001", "000010000"]
    assert [r.unit for r in records] == ["000000.tar", "000000.tar", "000001.tar"]
    assert records[1] == ImageRecord(
        key="000000001",
        image=jpeg_bytes(2),
        payload={"key": "000000001", "caption": "refined 000000001", "shard": "000000.tar"},
        unit="000000.tar",
    )


@pytest.mark.parametrize("key", ["ori_caption", "refined_caption", "qwen3_fused_caption"])
def test_the_caption_key_selects_the_payload_caption(tmp_path: Path, key: str) -> None:
    captions = {k: f"{k} text" for k in CAPTION_KEYS}
    write_tar(tmp_path / "000000.tar", pair("k", **captions))
    records, _ = read_all(PairedDataset(tmp_path, caption_key=key))
    assert [r.payload["caption"] for r in records] == [f"{key} text"]


def test_the_key_is_the_member_name_not_the_json_key(tmp_path: Path) -> None:
    members = [
        ("sub/x.y.jpg", jpeg_bytes(1)),
        ("sub/x.y.json", json.dumps({"key": "other", "refined_caption": "c"}).encode()),
    ]
    write_tar(tmp_path / "000000.tar", members)
    records, skips = read_all(PairedDataset(tmp_path))
    assert [r.key for r in records] == ["sub/x.y"] and skips.count == 0


def test_shards_are_tar_files_of_the_folder_in_name_order(tmp_path: Path) -> None:
    write_tar(tmp_path / "000010.tar", pair("k10"))
    write_tar(tmp_path / "000002.tar", pair("k2"))
    write_tar(tmp_path / "UPPER.TAR", pair("upper"))  # the reference matches ".tar" exactly
    write_tar(tmp_path / "nested" / "000000.tar", pair("nested"))
    (tmp_path / "folder.tar").mkdir()
    dataset = PairedDataset(tmp_path)
    assert dataset.units() == ["000002.tar", "000010.tar"]
    records, _ = read_all(dataset)
    assert [r.key for r in records] == ["k2", "k10"]


def test_missing_image_and_missing_caption_are_skipped_by_key(tmp_path: Path) -> None:
    members = [
        *pair("good", 1),
        ("no_image.json", meta("no_image", refined_caption="lonely caption")),
        ("no_caption.jpg", jpeg_bytes(2)),
        ("no_caption.json", meta("no_caption", ori_caption="only the original")),
        ("empty.png", b""),
        ("empty.json", meta("empty", refined_caption="c")),
        ("notes.parquet", b"PAR1"),
        ("readme", b"no extension"),
    ]
    write_tar(tmp_path / "000000.tar", members)
    dataset = PairedDataset(tmp_path)
    assert dataset.count() == 4  # good, no_image, no_caption, empty: other members are no part
    records, skips = read_all(dataset)
    assert [r.key for r in records] == ["good"]
    got = reasons(skips)
    assert got["no_image"] == "no image"
    assert got["no_caption"].startswith("no caption (no 'refined_caption' field")
    assert got["empty"] == "no image (empty image member)"
    assert "has no extension" in got["000000.tar: member 'readme' has no extension"]
    assert skips.count == 4


def test_verify_skips_images_pillow_cannot_parse(tmp_path: Path) -> None:
    members = [("a.png", png_bytes(1)[:20]), ("a.json", meta("a", refined_caption="A")), *pair("b")]
    write_tar(tmp_path / "000000.tar", members)
    records, skips = read_all(PairedDataset(tmp_path))
    assert [r.key for r in records] == ["a", "b"]  # bytes are the encoder's business by default
    records, skips = read_all(PairedDataset(tmp_path), verify=True)
    assert [r.key for r in records] == ["b"]
    assert reasons(skips)["a"].startswith("no image (corrupt image")


def test_a_truncated_shard_is_reported_and_reading_goes_on(tmp_path: Path) -> None:
    shard = write_tar(tmp_path / "000000.tar", [*pair("a", 1), *pair("b", 2), *pair("c", 3)])
    write_tar(tmp_path / "000001.tar", pair("d", 4))
    whole = shard.read_bytes()
    with tarfile.open(shard) as tar:
        members = tar.getmembers()
    cut = members[3].offset_data + 10  # inside b.json: "b" loses its caption
    shard.write_bytes(whole[:cut])
    done: list[str] = []
    records, skips = read_all(PairedDataset(tmp_path), on_unit_done=done.append)
    assert [r.key for r in records] == ["a", "d"]
    got = reasons(skips)
    assert "unexpected end of data" in got["000000.tar"]
    assert got["b"].startswith("no caption")
    assert done == ["000001.tar"]  # the damaged shard is retried on resume


def test_units_done_and_skipped(dataset_dir: Path) -> None:
    write_tar(dataset_dir / "000002.tar", pair("000020000"))
    events: list[str] = []
    skips = SkipLog()
    dataset = PairedDataset(dataset_dir)
    for record in dataset.iter_records(
        skips, skip_units={"000001.tar", "no_such.tar"}, on_unit_done=lambda u: events.append(f"done {u}")
    ):
        events.append(record.key)
    assert events == ["000000000", "000000001", "done 000000.tar", "000020000", "done 000002.tar"]


def test_a_unit_is_done_only_after_its_last_record_was_taken(dataset_dir: Path) -> None:
    done: list[str] = []
    records = PairedDataset(dataset_dir).iter_records(SkipLog(), on_unit_done=done.append)
    assert inspect.isgenerator(records)
    next(records)
    next(records)  # the last record of 000000.tar: handed out, not yet known to be last
    assert done == []
    next(records)
    assert done == ["000000.tar"]
    records.close()
    assert done == ["000000.tar"]


def test_empty_shards_are_units_that_finish(tmp_path: Path) -> None:
    write_tar(tmp_path / "000000.tar", [])
    write_tar(tmp_path / "000001.tar", pair("a"))
    done: list[str] = []
    records, skips = read_all(PairedDataset(tmp_path), on_unit_done=done.append)
    assert len(records) == 1 and skips.count == 0
    assert done == ["000000.tar", "000001.tar"]


def test_duplicate_keys_are_skipped_and_resuming_decides_them_alike(tmp_path: Path) -> None:
    write_tar(tmp_path / "000000.tar", pair("a", 1))
    write_tar(tmp_path / "000001.tar", [*pair("a", 2), *pair("b", 3)])
    dataset = PairedDataset(tmp_path)
    full, skips = read_all(dataset)
    assert [r.key for r in full] == ["a", "b"] and full[0].image == jpeg_bytes(1)
    assert "duplicate key" in reasons(skips)["a"]
    resumed, skips = read_all(dataset, skip_units=["000000.tar"])
    assert [r.key for r in resumed] == ["b"]  # the copy in 000001.tar must not replace the stored one
    assert "duplicate key" in reasons(skips)["a"]


def test_fingerprint_follows_shards_and_caption_key_not_the_tsv(dataset_dir: Path) -> None:
    base = PairedDataset(dataset_dir).fingerprint()
    assert base == PairedDataset(dataset_dir).fingerprint()
    assert PairedDataset(dataset_dir, caption_key="ori_caption").fingerprint() != base
    (dataset_dir / "mars_vl_pairs.tsv").write_text("changed\n")
    assert PairedDataset(dataset_dir).fingerprint() == base
    write_tar(dataset_dir / "000002.tar", pair("000020000"))
    assert PairedDataset(dataset_dir).fingerprint() != base
    (dataset_dir / "000002.tar").unlink()
    (dataset_dir / "000001.tar").write_bytes((dataset_dir / "000001.tar").read_bytes() + bytes(10240))
    assert PairedDataset(dataset_dir).fingerprint() != base  # same names, another size


def test_missing_folder_or_shards(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        PairedDataset(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no WebDataset shards"):
        PairedDataset(tmp_path)
    (tmp_path / "mars_vl_pairs.tsv").write_text("url\tori_caption\trefined_caption\tkey\n")
    with pytest.raises(DatasetError, match="img2dataset"):
        PairedDataset(tmp_path)
    write_tar(tmp_path / "000000.tar", pair("a"))
    with pytest.raises(ValueError, match="caption_key"):
        PairedDataset(tmp_path, caption_key="")


# ----------------------------------------------------------------------------- synthetic data


@pytest.mark.parametrize("caption_key", CAPTION_KEYS)
def test_reads_the_synthetic_paired_dataset(tmp_path: Path, caption_key: str) -> None:
    synth = pytest.importorskip("marsbench.datasets.synth")
    summary = synth.synthesize(tmp_path, scale="small", seed=5, tasks=("paired",), image_size=32)
    root = tmp_path / "paired" / "dataset"
    assert summary.paired is not None and summary.paired.dataset_dir == root
    dataset = PairedDataset(root, caption_key=caption_key)
    assert dataset.count() == summary.paired.pairs
    assert len(dataset.units()) == summary.paired.shards
    done: list[str] = []
    records, skips = read_all(dataset, verify=True, on_unit_done=done.append)
    assert skips.count == 0 and len(records) == summary.paired.pairs
    assert done == dataset.units()
    assert [r.key for r in records] == sorted(r.key for r in records)  # img2dataset keys, in order
    expected: dict[str, str] = {}
    for shard in dataset.units():
        with tarfile.open(root / shard) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    document = json.load(tar.extractfile(member))  # type: ignore[arg-type]
                    expected[member.name[: -len(".json")]] = document[caption_key]
    assert {r.key: r.payload["caption"] for r in records} == expected
    assert all(r.image.startswith(b"\xff\xd8") for r in records)

"""The landform reader on small fixtures written in both published layouts."""

from __future__ import annotations

import inspect
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from marsbench.datasets.errors import DatasetError
from marsbench.datasets.landform import (
    LandformDataset,
    class_names_from_hf_metadata,
    class_of_label,
    image_bytes_of,
    row_image_name,
)
from marsbench.datasets.records import ImageRecord, SkipLog

CLASSES = ["crater", "dune", "gully"]
IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def png_bytes(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (shade, shade, shade)).save(buffer, format="PNG")
    return buffer.getvalue()


def corrupt_png() -> bytes:
    # A real PNG signature with the body cut off: Pillow identifies it but cannot verify it.
    return png_bytes(7)[:20]


def hf_metadata(names: Sequence[str], *, nested: bool = True) -> dict[bytes, bytes]:
    features = {
        "image": {"_type": "Image"},
        "label": {"_type": "ClassLabel", "names": list(names)},
    }
    document = {"info": {"features": features}} if nested else {"features": features}
    return {b"huggingface": json.dumps(document).encode()}


def write_shard(
    path: Path,
    images: Sequence[bytes | None],
    labels: Sequence[int | None],
    *,
    ids: dict[str, Sequence[Any]] | None = None,
    metadata: dict[bytes, bytes] | None = None,
    raw_binary: bool = False,
) -> None:
    if raw_binary:
        image_column = pa.array(images, type=pa.binary())
    else:
        cells = [{"bytes": b, "path": None if b is None else f"img{i}.png"} for i, b in enumerate(images)]
        image_column = pa.array(cells, type=IMAGE_TYPE)
    columns: dict[str, pa.Array] = {"image": image_column, "label": pa.array(labels, type=pa.int64())}
    for name, values in (ids or {}).items():
        columns[name] = pa.array(values)
    table = pa.table(columns)
    if metadata is not None:
        table = table.replace_schema_metadata(metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def read_all(dataset: LandformDataset, *, verify: bool = False) -> tuple[list[ImageRecord], SkipLog]:
    skips = SkipLog()
    return list(dataset.iter_records(skips, verify=verify)), skips


def skip_reasons(skips: SkipLog) -> dict[str, str]:
    return {item.key: item.reason for item in skips.items}


@pytest.fixture
def hf_dataset(tmp_path: Path) -> Path:
    """Two shards under data/, named by `image_id`, with the class names in the metadata."""
    root = tmp_path / "dataset"
    meta = hf_metadata(CLASSES)
    write_shard(
        root / "data" / "train-00000-of-00002.parquet",
        [png_bytes(1), png_bytes(2), png_bytes(3)],
        [0, 1, 2],
        ids={"image_id": ["a.png", "b.png", "c.png"]},
        metadata=meta,
    )
    write_shard(
        root / "data" / "train-00001-of-00002.parquet",
        [png_bytes(4), png_bytes(5)],
        [1, 1],
        ids={"image_id": ["d.png", "e.png"]},
        metadata=meta,
    )
    return root


# ----------------------------------------------------------------------------- parquet layout


def test_parquet_in_data_folder(hf_dataset: Path) -> None:
    dataset = LandformDataset(hf_dataset)
    assert dataset.layout == "parquet"
    assert dataset.class_names() == CLASSES
    assert dataset.count() == 5
    records, skips = read_all(dataset)
    assert [r.key for r in records] == ["a.png", "b.png", "c.png", "d.png", "e.png"]
    assert [r.payload for r in records[:2]] == [
        {"name": "a.png", "label": "crater"},
        {"name": "b.png", "label": "dune"},
    ]
    assert records[3].image == png_bytes(4)
    assert skips.count == 0


def test_parquet_directly_in_root_wins_over_data_folder(tmp_path: Path) -> None:
    write_shard(tmp_path / "top.parquet", [png_bytes(1)], [0], metadata=hf_metadata(["x"]))
    write_shard(tmp_path / "data" / "nested.parquet", [png_bytes(2)] * 2, [0, 0], metadata=hf_metadata(["y"]))
    dataset = LandformDataset(tmp_path)
    assert dataset.layout == "parquet"
    assert dataset.class_names() == ["x"]
    assert dataset.count() == 1


def test_top_level_features_metadata_is_accepted(tmp_path: Path) -> None:
    write_shard(tmp_path / "s.parquet", [png_bytes(1)], [1], metadata=hf_metadata(CLASSES, nested=False))
    records, _ = read_all(LandformDataset(tmp_path))
    assert records[0].payload["label"] == "dune"


def test_id_fallbacks_image_id_then_id_then_global_row_index(tmp_path: Path) -> None:
    meta = hf_metadata(CLASSES)
    # Shard 0: rows 0..3. Falsy ids fall through like the reference's `image_id or id or str(index)`.
    write_shard(
        tmp_path / "data" / "s0.parquet",
        [png_bytes(i) for i in range(4)],
        [0, 0, 0, 0],
        ids={"image_id": ["img-a", None, "", None], "id": ["id-a", "id-b", "id-c", None]},
        metadata=meta,
    )
    # Shard 1: only an integer `id` column; id 0 is falsy, so row 5 is named by its index.
    write_shard(
        tmp_path / "data" / "s1.parquet",
        [png_bytes(9), png_bytes(10)],
        [1, 1],
        ids={"id": [17, 0]},
        metadata=meta,
    )
    # Shard 2: no id column at all: the global row index (6, 7) across the sorted shards.
    write_shard(tmp_path / "data" / "s2.parquet", [png_bytes(11), png_bytes(12)], [2, 2], metadata=meta)
    records, skips = read_all(LandformDataset(tmp_path))
    assert [r.key for r in records] == ["img-a", "id-b", "id-c", "3", "17", "5", "6", "7"]
    assert skips.count == 0


def test_missing_metadata_falls_back_to_sorted_label_strings(tmp_path: Path) -> None:
    write_shard(tmp_path / "data" / "s0.parquet", [png_bytes(1), png_bytes(2)], [10, 2])
    write_shard(tmp_path / "data" / "s1.parquet", [png_bytes(3)], [2])
    dataset = LandformDataset(tmp_path)
    # Sorted as strings, as the reference does: "10" < "2".
    assert dataset.class_names() == ["10", "2"]
    records, _ = read_all(dataset)
    assert [r.payload["label"] for r in records] == ["10", "2", "2"]


def test_unusable_rows_are_skipped_with_reasons(tmp_path: Path) -> None:
    write_shard(
        tmp_path / "s.parquet",
        [png_bytes(1), None, png_bytes(3), png_bytes(4), png_bytes(5), png_bytes(6)],
        [0, 0, 3, None, 1, 2],
        ids={"image_id": ["ok", "nobytes", "badlabel", "nolabel", "ok", "ok2"]},
        metadata=hf_metadata(CLASSES),
    )
    records, skips = read_all(LandformDataset(tmp_path))
    assert [r.key for r in records] == ["ok", "ok2"]
    assert skips.count == 4
    reasons = [(item.key, item.reason) for item in skips.items]
    assert reasons[0] == ("nobytes", "no image bytes")
    assert reasons[1][0] == "badlabel"
    assert "not a class index" in reasons[1][1]
    assert reasons[2] == ("nolabel", "missing label")
    assert reasons[3] == ("ok", "duplicate image name")


def test_raw_binary_image_column(tmp_path: Path) -> None:
    write_shard(tmp_path / "s.parquet", [png_bytes(1), b""], [0, 0], raw_binary=True)
    records, skips = read_all(LandformDataset(tmp_path))
    assert [r.key for r in records] == ["0"]
    assert records[0].image == png_bytes(1)
    assert skip_reasons(skips) == {"1": "no image bytes"}


def test_corrupt_parquet_image_is_skipped_only_with_verify(tmp_path: Path) -> None:
    write_shard(
        tmp_path / "s.parquet",
        [png_bytes(1), corrupt_png(), b"not an image at all"],
        [0, 1, 2],
        ids={"image_id": ["good", "truncated", "garbage"]},
        metadata=hf_metadata(CLASSES),
    )
    dataset = LandformDataset(tmp_path)
    unchecked, unchecked_skips = read_all(dataset)
    assert len(unchecked) == 3
    assert unchecked_skips.count == 0
    checked, skips = read_all(dataset, verify=True)
    assert [r.key for r in checked] == ["good"]
    reasons = skip_reasons(skips)
    assert set(reasons) == {"truncated", "garbage"}
    assert all(reason.startswith("corrupt image") for reason in reasons.values())


def test_shard_without_required_columns_is_an_error(tmp_path: Path) -> None:
    pq.write_table(pa.table({"image": pa.array([png_bytes(1)])}), tmp_path / "s.parquet")
    dataset = LandformDataset(tmp_path)
    with pytest.raises(DatasetError, match="label"):
        read_all(dataset)


def test_iter_records_streams_batches_and_never_reads_whole_tables(
    hf_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the reader must stream, not load whole tables")

    monkeypatch.setattr(pq, "read_table", refuse)
    monkeypatch.setattr(pq.ParquetFile, "read", refuse)
    dataset = LandformDataset(hf_dataset)
    records = dataset.iter_records(SkipLog())
    assert inspect.isgenerator(records)
    assert next(records).key == "a.png"
    assert len(list(records)) == 4


# ----------------------------------------------------------------------------- folder layout


@pytest.fixture
def folder_dataset(tmp_path: Path) -> Path:
    root = tmp_path / "folder_dataset"
    for cls, files in {
        "dune": ["b.png", "a.JPG"],
        "crater": ["x.jpeg", "broken.png", "notes.txt"],
        "gully": [],
    }.items():
        (root / cls).mkdir(parents=True)
        for name in files:
            data = {"broken.png": corrupt_png(), "notes.txt": b"not data"}.get(name, png_bytes(len(name)))
            (root / cls / name).write_bytes(data)
    (root / ".cache" / "huggingface").mkdir(parents=True)
    (root / "README.md").write_text("a dataset card, not an image")
    return root


def test_folder_layout_classes_and_names(folder_dataset: Path) -> None:
    dataset = LandformDataset(folder_dataset)
    assert dataset.layout == "folders"
    # Sorted folder names, hidden folders left out, empty class folders kept.
    assert dataset.class_names() == ["crater", "dune", "gully"]
    assert dataset.count() == 4
    records, skips = read_all(dataset)
    # The text file is ignored (not skipped); the upper-case extension counts.
    assert [r.key for r in records] == ["crater/broken.png", "crater/x.jpeg", "dune/a.JPG", "dune/b.png"]
    assert records[2].payload == {"name": "dune/a.JPG", "label": "dune"}
    assert records[3].image == (folder_dataset / "dune" / "b.png").read_bytes()
    assert skips.count == 0


def test_folder_layout_verify_reports_corrupt_file_by_name(folder_dataset: Path) -> None:
    records, skips = read_all(LandformDataset(folder_dataset), verify=True)
    assert "crater/broken.png" not in [r.key for r in records]
    assert len(records) == 3
    assert list(skip_reasons(skips)) == ["crater/broken.png"]
    assert skips.items[0].reason.startswith("corrupt image")


def test_folder_iteration_is_a_generator(folder_dataset: Path) -> None:
    assert inspect.isgenerator(LandformDataset(folder_dataset).iter_records(SkipLog()))


# ----------------------------------------------------------------------------- errors, fingerprint


def test_neither_layout_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty_class").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DatasetError) as caught:
        LandformDataset(tmp_path)
    message = str(caught.value)
    assert str(tmp_path) in message
    assert "parquet" in message
    assert "subfolder per class" in message


def test_missing_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        LandformDataset(tmp_path / "nowhere")


def test_fingerprint_follows_file_names_and_sizes(hf_dataset: Path, folder_dataset: Path) -> None:
    first = LandformDataset(hf_dataset).fingerprint()
    assert first == LandformDataset(hf_dataset).fingerprint()
    assert len(first) == 16
    assert first != LandformDataset(folder_dataset).fingerprint()
    write_shard(hf_dataset / "data" / "train-00002-of-00003.parquet", [png_bytes(9)], [0])
    assert LandformDataset(hf_dataset).fingerprint() != first

    folders_before = LandformDataset(folder_dataset).fingerprint()
    (folder_dataset / "gully" / "new.png").write_bytes(png_bytes(3))
    assert LandformDataset(folder_dataset).fingerprint() != folders_before


def test_fingerprint_ignores_non_image_files(folder_dataset: Path) -> None:
    before = LandformDataset(folder_dataset).fingerprint()
    (folder_dataset / "dune" / "more-notes.txt").write_text("ignored")
    assert LandformDataset(folder_dataset).fingerprint() == before


# ----------------------------------------------------------------------------- pure helpers


def test_metadata_parsing() -> None:
    assert class_names_from_hf_metadata(hf_metadata(["a", "b"])) == ["a", "b"]
    assert class_names_from_hf_metadata(None) is None
    assert class_names_from_hf_metadata({b"other": b"{}"}) is None
    assert class_names_from_hf_metadata(hf_metadata([])) is None
    no_names = {b"huggingface": json.dumps({"info": {"features": {"label": {"_type": "Value"}}}}).encode()}
    assert class_names_from_hf_metadata(no_names) is None
    with pytest.raises(DatasetError):
        class_names_from_hf_metadata({b"huggingface": b"{not json"})


def test_row_name_and_label_helpers() -> None:
    assert row_image_name("a", "b", 3) == "a"
    assert row_image_name(0, 5, 3) == "5"
    assert row_image_name("", None, 3) == "3"
    assert class_of_label(1, ["x", "y"]) == "y"
    assert class_of_label(2, ["x", "y"]) is None
    assert class_of_label(-1, ["x", "y"]) is None
    assert class_of_label(None, None) is None
    assert class_of_label(7, None) == "7"
    assert image_bytes_of({"bytes": b"x", "path": "p"}) == b"x"
    assert image_bytes_of({"bytes": None, "path": "p"}) is None
    assert image_bytes_of(b"") is None

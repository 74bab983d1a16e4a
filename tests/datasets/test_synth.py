"""The synthetic generator writes the published layouts, deterministically and atomically."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from marsbench.datasets import synth
from marsbench.datasets.synth import (
    GEO_LANDFORMS,
    LANDFORM_CLASSES,
    MANIFEST_NAME,
    THUMB_SUBDIR,
    TSV_NAME,
    SynthSummary,
    synthesize,
    tile_name,
)
from marsbench.datasets.synth import _api as synth_api

TILE_RE = re.compile(r"^E(_?)(\d+_\d+)_N(_?)(\d+_\d+)\.png$")
PARQUET_RE = re.compile(r"^train-(\d{5})-of-(\d{5})\.parquet$")
SHARD_RE = re.compile(r"^\d{6}\.tar$")


def parse_tile(name: str) -> tuple[float, float]:
    """The protocol's reading of a tile name (independent of the generator's writer)."""
    m = TILE_RE.match(name)
    assert m, name
    lon = float(m.group(2).replace("_", ".")) * (-1 if m.group(1) else 1)
    lat = float(m.group(4).replace("_", ".")) * (-1 if m.group(3) else 1)
    return lon, lat


def tar_members(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]  # type: ignore[union-attr]


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    return synthesize(tmp_path_factory.mktemp("synth"), scale="small", seed=0)


def test_writes_every_task_folder_and_no_staging_leftovers(small: SynthSummary) -> None:
    assert sorted(p.name for p in small.out.iterdir()) == ["geo", "landform", "landform_folders", "paired"]
    for folder in small.out.iterdir():
        assert (folder / MANIFEST_NAME).is_file()
        assert (folder / "dataset").is_dir()


def test_landform_parquet_is_hf_layout_with_class_names(small: SynthSummary) -> None:
    assert small.landform is not None
    files = sorted((small.landform.parquet_dir / "data").iterdir())
    assert len(files) >= 2
    for i, path in enumerate(files):
        m = PARQUET_RE.match(path.name)
        assert m and int(m.group(1)) == i and int(m.group(2)) == len(files)
    schema = pq.read_schema(files[0])
    assert schema.field("image").type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    assert schema.field("label").type == pa.int64()
    assert schema.field("image_id").type == pa.string()
    features = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert features["label"] == {"names": list(LANDFORM_CLASSES), "_type": "ClassLabel"}
    assert features["image"] == {"_type": "Image"}
    assert features["image_id"] == {"dtype": "string", "_type": "Value"}

    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    assert len(rows) == small.landform.images
    assert len({r["image_id"] for r in rows}) == len(rows)
    counts = {name: sum(r["label"] == i for r in rows) for i, name in enumerate(LANDFORM_CLASSES)}
    assert counts == small.landform.per_class
    assert min(counts.values()) >= 10
    image = Image.open(io.BytesIO(rows[0]["image"]["bytes"]))
    assert image.format == "PNG" and image.size == (small.image_size, small.image_size)


def test_landform_folders_hold_the_same_images(small: SynthSummary) -> None:
    assert small.landform is not None
    rows = [
        r
        for f in sorted((small.landform.parquet_dir / "data").iterdir())
        for r in pq.read_table(f).to_pylist()
    ]
    from_parquet = {(LANDFORM_CLASSES[r["label"]], r["image_id"]): r["image"]["bytes"] for r in rows}
    folders = small.landform.folders_dir
    assert sorted(p.name for p in folders.iterdir()) == sorted(LANDFORM_CLASSES)
    from_folders = {(p.parent.name, p.stem): p.read_bytes() for p in folders.glob("*/*.png")}
    assert from_folders == from_parquet


def test_paired_shards_group_by_basename_and_match_the_tsv(small: SynthSummary) -> None:
    assert small.paired is not None
    shards = sorted(small.paired.dataset_dir.glob("*.tar"))
    assert [p.name for p in shards] == [f"{i:06d}.tar" for i in range(small.paired.shards)]
    assert len(shards) >= 2 and all(SHARD_RE.match(p.name) for p in shards)
    samples: dict[str, dict[str, str]] = {}
    for shard in shards:
        names = [name for name, _ in tar_members(shard)]
        bases = [n.rsplit(".", 1)[0] for n in names]
        # WebDataset reads a sample as consecutive members sharing a basename.
        assert [(bases[i], bases[i + 1]) for i in range(0, len(bases), 2)] == [(b, b) for b in bases[::2]]
        for name, data in tar_members(shard):
            base, ext = name.rsplit(".", 1)
            if ext == "json":
                samples[base] = json.loads(data)
            else:
                assert ext == "jpg" and Image.open(io.BytesIO(data)).format == "JPEG"
    assert len(samples) == small.paired.pairs
    for base, meta in samples.items():
        assert meta["key"] == base
        for key in ("ori_caption", "refined_caption", "qwen3_fused_caption"):
            assert isinstance(meta[key], str) and meta[key]
    with small.paired.tsv.open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert list(rows[0]) == ["url", "ori_caption", "refined_caption", "key"]
    assert {r["key"]: (r["ori_caption"], r["refined_caption"]) for r in rows} == {
        k: (m["ori_caption"], m["refined_caption"]) for k, m in samples.items()
    }


def test_paired_captions_are_specific_but_describe_landforms(small: SynthSummary) -> None:
    assert small.paired is not None
    with small.paired.tsv.open(newline="") as f:
        refined = [r["refined_caption"] for r in csv.DictReader(f, delimiter="\t")]
    assert len(set(refined)) >= 0.95 * len(refined)
    words = (
        "crater",
        "yardang",
        "alluvial fan",
        "pitted cone",
        "glacier-like form",
        "landslide",
        "slope streak",
    )
    assert all(any(w in c for w in words) for c in refined)


def test_geo_tiles_are_named_by_corner_on_the_grid(small: SynthSummary) -> None:
    assert small.geo is not None
    thumb = small.geo.dataset_dir / THUMB_SUBDIR
    assert thumb == small.geo.thumb_dir
    sources = sorted(p.name for p in thumb.iterdir())
    assert sources == sorted(small.geo.sources) and len(sources) >= 2
    coords: list[tuple[float, float]] = []
    for source in sources:
        shards = sorted((thumb / source).iterdir())
        assert shards and all(SHARD_RE.match(p.name) for p in shards)
        for shard in shards:
            for name, data in tar_members(shard):
                lon, lat = parse_tile(name)
                assert tile_name((round(lon * 10), round(lat * 10))) == name
                assert Image.open(io.BytesIO(data)).format == "PNG"
                coords.append((lon, lat))
    assert len(coords) == len(set(coords)) == small.geo.tiles
    for lon, lat in coords:
        assert abs(lat) <= 80
        assert math.isclose(lon * 5, round(lon * 5), abs_tol=1e-9)
        assert math.isclose(lat * 5, round(lat * 5), abs_tol=1e-9)
    # The region spans both hemispheres and both sides of the prime meridian.
    assert {(lon < 0, lat < 0) for lon, lat in coords} == {
        (a, b) for a in (True, False) for b in (True, False)
    }


def test_geo_catalogue_points_fall_in_existing_tiles(small: SynthSummary) -> None:
    assert small.geo is not None
    thumb = small.geo.thumb_dir
    names = {name for shard in thumb.rglob("*.tar") for name, _ in tar_members(shard)}
    truth = small.geo.dataset_dir / "ground_truth"
    assert sorted(p.stem for p in truth.iterdir()) == sorted(GEO_LANDFORMS)
    for landform in GEO_LANDFORMS:
        with (truth / f"{landform}.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert {"lon", "lat"} <= set(rows[0]) and len(rows[0]) > 2
        assert len(rows) == small.geo.points[landform] > 0
        for row in rows:
            tile = (math.floor(float(row["lon"]) * 5) * 2, math.floor(float(row["lat"]) * 5) * 2)
            assert tile_name(tile) in names
        queries = sorted((small.geo.dataset_dir / "image_queries" / landform).glob("*.png"))
        assert len(queries) == small.geo.query_images[landform] >= 1


@pytest.mark.parametrize(
    ("tile", "name"),
    [
        ((124, -32), "E12_4_N_3_2.png"),
        ((-124, 32), "E_12_4_N3_2.png"),
        ((0, 0), "E0_0_N0_0.png"),
        ((-2, -2), "E_0_2_N_0_2.png"),
        ((1798, 798), "E179_8_N79_8.png"),
    ],
)
def test_tile_name_matches_the_published_examples(tile: tuple[int, int], name: str) -> None:
    assert tile_name(tile) == name
    assert parse_tile(name) == (tile[0] / 10, tile[1] / 10)


def test_manifest_digests_match_the_files(small: SynthSummary) -> None:
    manifest = json.loads((small.out / "paired" / MANIFEST_NAME).read_text())
    assert manifest["seed"] == 0 and manifest["scale"] == "small"
    actual = synth._io.file_digests(small.out / "paired")
    actual.pop(MANIFEST_NAME)
    assert manifest["files"] == actual


def test_same_seed_gives_the_same_bytes(small: SynthSummary, tmp_path: Path) -> None:
    again = synthesize(tmp_path, scale="small", seed=0)
    assert tree_bytes(again.out) == tree_bytes(small.out)


def test_another_seed_gives_other_images(small: SynthSummary, tmp_path: Path) -> None:
    other = synthesize(tmp_path, scale="small", seed=1, tasks=("landform",))
    assert other.landform is not None and small.landform is not None
    assert tree_bytes(other.landform.parquet_dir) != tree_bytes(small.landform.parquet_dir)
    assert not (tmp_path / "geo").exists()


def test_rerun_replaces_a_task_in_place(tmp_path: Path) -> None:
    first = synthesize(tmp_path, seed=3, tasks=("paired",), image_size=48)
    before = tree_bytes(tmp_path)
    second = synthesize(tmp_path, seed=3, tasks=("paired",), image_size=48)
    assert tree_bytes(tmp_path) == before
    assert first.paired == second.paired


def test_a_failed_run_leaves_no_partial_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synthesize(tmp_path, seed=2, tasks=("paired",), image_size=48)
    before = tree_bytes(tmp_path)

    def broken(root: Path, *args: object) -> int:
        (root / "dataset").mkdir(parents=True)
        (root / "dataset" / "000000.tar").write_bytes(b"half a shard")
        raise RuntimeError("interrupted")

    monkeypatch.setattr(synth_api, "build_paired", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        synthesize(tmp_path, seed=5, tasks=("landform", "paired"), image_size=48)
    # The old complete copy is untouched, nothing new was published, no staging is left.
    assert tree_bytes(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["paired"]


@pytest.mark.parametrize(
    "kwargs",
    [{"scale": "huge"}, {"seed": -1}, {"tasks": ("landform", "ocean")}, {"tasks": ()}, {"image_size": 8}],
)
def test_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        synthesize(tmp_path, **kwargs)  # type: ignore[arg-type]


def test_summary_serialises_to_json(small: SynthSummary) -> None:
    data = json.loads(json.dumps(small.to_dict()))
    assert data["landform"]["classes"] == list(LANDFORM_CLASSES)
    assert data["paired"]["tsv"].endswith(TSV_NAME)

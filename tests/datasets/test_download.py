"""`marsbench data download`: hub snapshots from a fake hub cache, the paired images from a loopback
server into shards the paired reader reads, resumable after a kill, failures listed by key."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from download_fixtures import (
    COMMIT,
    OTHER_COMMIT,
    ImageServer,
    fake_hub_repo,
    image_server,
    write_pairs_tsv,
)
from PIL import Image

from marsbench.cli.main import main
from marsbench.datasets.download.hub import UNPINNED_WARNING, download_hub_dataset, pairs_tsv_from_hub
from marsbench.datasets.download.images import center_crop, robots_refusal
from marsbench.datasets.download.pairs import (
    FAILURES_CSV,
    FAILURES_JSON,
    PairsDownloadOptions,
    download_pairs,
)
from marsbench.datasets.download.shards import STAGING, shard_keys, staged_keys
from marsbench.datasets.download.tsv import positional_key, read_tsv
from marsbench.datasets.errors import DatasetError
from marsbench.datasets.paired import PairedDataset
from marsbench.datasets.records import SkipLog

FAST = PairsDownloadOptions(image_size=32, shard_size=3, workers=4, timeout_s=0.5, retries=1, backoff_s=0.01)


@pytest.fixture
def server() -> ImageServer:
    with image_server() as running:
        yield running


@pytest.fixture(autouse=True)
def no_hub_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub is offline and, were it asked anyway, at a loopback port nothing listens on."""
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")


def _read_pairs(folder: Path) -> tuple[dict[str, str], SkipLog]:
    skips = SkipLog()
    records = list(PairedDataset(folder).iter_records(skips, verify=True))
    keys = [r.key for r in records]
    assert len(keys) == len(set(keys))
    return {r.key: r.payload["caption"] for r in records}, skips


def _all_shard_keys(folder: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for shard in sorted(folder.glob("*.tar")):
        from marsbench.datasets.tar_shards import scan_tar_members

        counts.update(name for name, _ in scan_tar_members(shard).members if name.endswith(".jpg"))
    return counts


# ----------------------------------------------------------------------------- pure helpers


def test_center_crop_scales_the_shorter_side_then_cuts_the_middle() -> None:
    wide = Image.new("RGB", (600, 400))
    assert center_crop(wide, 64).size == (64, 64)
    small = Image.new("RGB", (20, 50))
    assert center_crop(small, 64).size == (64, 64)
    assert center_crop(Image.new("RGB", (64, 90)), 64).size == (64, 64)


def test_positional_keys_are_img2datasets() -> None:
    assert positional_key(0, 1000) == "000000000"
    assert positional_key(1234, 1000) == "000001234"
    assert positional_key(7, 3) == "0000021"


def test_robots_directives_refuse() -> None:
    assert robots_refusal("noai, noimageai")
    assert robots_refusal("googlebot: noindex")
    assert robots_refusal("nofollow") is None
    assert robots_refusal(None) is None


# ----------------------------------------------------------------------------- paired images


def test_images_become_shards_the_paired_reader_reads(server: ImageServer, tmp_path: Path) -> None:
    rows = [
        ("a", server.url("png", "a")),
        ("b", server.url("missing", "b")),
        ("c", server.url("jpg", "c")),
        ("d", server.url("slow", "d")),
        ("e", server.url("corrupt", "e")),
        ("f", server.url("flaky", "f")),
        ("g", server.url("png", "g")),
        ("h", server.url("noai", "h")),
        ("i", "ftp://example.invalid/i.png"),  # never fetched: not http(s)
    ]
    tsv = write_pairs_tsv(tmp_path / "mars_vl_pairs.tsv", rows)
    out = tmp_path / "dataset"
    progress: list[object] = []
    result = download_pairs(tsv, out, FAST, on_progress=progress.append)

    assert (result.fetched, result.failed, result.shards, result.key_source) == (4, 5, 3, "tsv")
    assert sorted(p.name for p in out.glob("*.tar")) == ["000000.tar", "000001.tar", "000002.tar"]
    assert not (out / STAGING).exists()
    captions, skips = _read_pairs(out)
    assert captions == {k: f"refined caption of {k}" for k in ("a", "c", "f", "g")}
    assert not skips.items
    failures = {f["key"]: f for f in json.loads((out / FAILURES_JSON).read_text())}
    assert sorted(failures) == ["b", "d", "e", "h", "i"]
    assert failures["b"]["http_status"] == 404 and failures["b"]["attempts"] == 1
    assert "timed out" in failures["d"]["error"] and failures["d"]["attempts"] == 2
    assert "not a readable image" in failures["e"]["error"]
    assert "X-Robots-Tag" in failures["h"]["error"]
    assert failures["b"]["shard"] == "000000.tar" and failures["b"]["url"] == server.url("missing", "b")
    assert (out / FAILURES_CSV).read_text().splitlines()[0].startswith("key,row,shard,url,error")
    assert server.requests.count("/flaky/f") == 2  # the 503 was retried
    assert "/missing/b" in server.requests and server.requests.count("/missing/b") == 1
    last = progress[-1]
    assert (last.done, last.failed, last.total) == (4, 5, 9)  # type: ignore[attr-defined]

    sample = json.loads(_member(out / "000000.tar", "a.json"))
    assert sample["ori_caption"] == "original a" and sample["url"] == server.url("png", "a")
    assert (sample["width"], sample["height"], sample["original_width"]) == (32, 32, 60)
    with Image.open(io.BytesIO(_member(out / "000000.tar", "a.jpg"))) as image:
        assert (image.format, image.size) == ("JPEG", (32, 32))


def _member(shard: Path, name: str) -> bytes:
    import tarfile

    with tarfile.open(shard) as tar:
        extracted = tar.extractfile(name)
        assert extracted is not None
        return extracted.read()


def test_a_rerun_fetches_only_the_missing_keys_and_rebuilds_their_shard(
    server: ImageServer, tmp_path: Path
) -> None:
    rows = [(k, server.url("png", k)) for k in "abc"] + [("d", server.url("missing", "d"))]
    tsv = write_pairs_tsv(tmp_path / "pairs.tsv", rows)
    out = tmp_path / "dataset"
    first = download_pairs(tsv, out, FAST)
    assert (first.fetched, first.failed) == (3, 1)

    server.requests.clear()
    server.served_missing.add("/missing/d")
    second = download_pairs(tsv, out, FAST)
    assert server.requests == ["/missing/d"]
    assert (second.present_before, second.fetched, second.failed) == (3, 1, 0)
    assert json.loads((out / FAILURES_JSON).read_text()) == []
    assert sorted(_read_pairs(out)[0]) == ["a", "b", "c", "d"]
    assert max(_all_shard_keys(out).values()) == 1

    server.requests.clear()
    third = download_pairs(tsv, out, FAST)
    assert server.requests == [] and (third.fetched, third.shards_written) == (0, 0)


def test_positional_keys_when_the_tsv_has_none(server: ImageServer, tmp_path: Path) -> None:
    tsv = write_pairs_tsv(tmp_path / "pairs.tsv", [("", server.url("png", str(i))) for i in range(4)])
    result = download_pairs(tsv, tmp_path / "out", FAST)
    assert result.key_source == "position"
    assert sorted(_read_pairs(tmp_path / "out")[0]) == ["0000000", "0000001", "0000002", "0000010"]


def test_another_tsv_into_the_same_folder_is_refused(server: ImageServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    download_pairs(write_pairs_tsv(tmp_path / "one.tsv", [("a", server.url("png", "a"))]), out, FAST)
    other = write_pairs_tsv(tmp_path / "two.tsv", [("z", server.url("png", "z"))])
    with pytest.raises(DatasetError, match="another TSV or with other settings"):
        download_pairs(other, out, FAST)
    with pytest.raises(DatasetError, match="shard_size"):
        download_pairs(tmp_path / "one.tsv", out, FAST.model_copy(update={"shard_size": 5}))


def test_killed_mid_way_a_rerun_fetches_only_what_is_missing(server: ImageServer, tmp_path: Path) -> None:
    server.delay_s = 0.05
    rows = [(f"k{i:03d}", server.url("png", f"k{i:03d}")) for i in range(60)]
    tsv = write_pairs_tsv(tmp_path / "pairs.tsv", rows)
    out = tmp_path / "dataset"
    command = [
        sys.executable, "-m", "marsbench.cli.main", "data", "download", "paired", "--tsv", str(tsv),
        "--out", str(out), "--workers", "2", "--shard-size", "10", "--image-size", "16",
    ]  # fmt: skip
    child = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            staged = (
                sum(len(staged_keys(d)) for d in (out / STAGING).glob("*")) if (out / STAGING).is_dir() else 0
            )
            if (out / "000000.tar").exists() and staged >= 3:
                break
            time.sleep(0.02)
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
        os.killpg(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    time.sleep(0.3)  # requests in flight at the kill reach the server

    kept = set()
    for shard in out.glob("*.tar"):
        kept |= shard_keys(shard) or set()
    for folder in (out / STAGING).glob("*"):
        kept |= staged_keys(folder)
    assert 10 <= len(kept) < 60

    server.requests.clear()
    server.delay_s = 0.0
    result = download_pairs(tsv, out, PairsDownloadOptions(image_size=16, shard_size=10, workers=4))
    fetched = [path.rsplit("/", 1)[1] for path in server.requests]
    assert len(fetched) == len(set(fetched))  # nothing asked twice
    assert set(fetched) == {key for key, _ in rows} - kept  # exactly the missing keys
    assert (result.present_before, result.fetched, result.failed) == (len(kept), 60 - len(kept), 0)
    counts = _all_shard_keys(out)
    assert len(counts) == 60 and set(counts.values()) == {1}
    assert len(_read_pairs(out)[0]) == 60
    assert not (out / STAGING).exists()


# ----------------------------------------------------------------------------- hub datasets


def test_landform_from_the_hub_cache(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    parquet = b"PAR1 stand-in bytes PAR1"
    fake_hub_repo(
        cache, "SUSTech/Mars-Landforms", {"data/train-00000-of-00001.parquet": parquet, "README.md": b"#"}
    )
    out = tmp_path / "landform" / "dataset"
    result = download_hub_dataset("landform", out, cache_dir=cache, offline=True)
    assert (out / "data" / "train-00000-of-00001.parquet").read_bytes() == parquet
    assert not (out / "data" / "train-00000-of-00001.parquet").is_symlink()
    assert (result.files, result.copied, result.skipped) == (2, 2, 0)
    assert result.warning and UNPINNED_WARNING in result.warning
    source = json.loads((out / "download_source.json").read_text())
    assert source == {
        "repo_id": "SUSTech/Mars-Landforms", "repo_type": "dataset", "revision": "main", "commit": COMMIT,
        "pinned": False,
    }  # fmt: skip
    again = download_hub_dataset("landform", out, cache_dir=cache, offline=True)
    assert (again.copied, again.skipped) == (0, 2)


def test_a_revision_override_picks_that_snapshot(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    repo = "SUSTech/Mars-Global-Geolocalization"
    fake_hub_repo(cache, repo, {"ground_truth/crater.csv": b"lon,lat\n1,2\n"})
    fake_hub_repo(cache, repo, {"ground_truth/dune.csv": b"lon,lat\n3,4\n"}, commit=OTHER_COMMIT, ref=False)
    out = tmp_path / "geo"
    result = download_hub_dataset(
        "geolocalization", out, cache_dir=cache, offline=True, revision=OTHER_COMMIT
    )
    assert result.warning is None and result.source.pinned and result.source.commit == OTHER_COMMIT
    assert (out / "ground_truth" / "dune.csv").is_file() and not (
        out / "ground_truth" / "crater.csv"
    ).exists()


def test_a_dataset_missing_from_the_cache_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="SUSTech/Mars-Landforms"):
        download_hub_dataset("landform", tmp_path / "out", cache_dir=tmp_path / "empty", offline=True)


def test_the_pairs_tsv_from_hub_rows_as_hf2tsv_writes_it(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "image_url": ["http://127.0.0.1:9/a.png", "http://127.0.0.1:9/b.png", None],
            "ori_caption": ["ori a", "", "ori c"],
            "refined_caption": ["ref a", "ref b", "ref c"],
            "key": ["a", "b", "c"],
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    cache = tmp_path / "hub"
    fake_hub_repo(
        cache,
        "SUSTech/Mars-VL-Pairs",
        {"data/train-00000-of-00001.parquet": buffer.getvalue(), "data/test-00000-of-00001.parquet": b"x"},
    )
    path, count, source, warning = pairs_tsv_from_hub(tmp_path / "out", cache_dir=cache, offline=True)
    assert count == 1 and source.commit == COMMIT and warning
    assert path.read_text().splitlines()[0] == "url\tori_caption\trefined_caption\tkey"
    assert [(r.url, r.key) for r in read_tsv(path)] == [("http://127.0.0.1:9/a.png", "a")]


# ----------------------------------------------------------------------------- the command


def test_the_command_for_hub_and_paired(
    server: ImageServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "hub"
    fake_hub_repo(cache, "SUSTech/Mars-Landforms", {"data/train-00000-of-00001.parquet": b"p"})
    out = tmp_path / "landform"
    assert (
        main(["data", "download", "landform", "--out", str(out), "--cache-dir", str(cache), "--offline"]) == 0
    )
    captured = capsys.readouterr()
    assert UNPINNED_WARNING in captured.err and COMMIT in captured.out

    tsv = write_pairs_tsv(
        tmp_path / "pairs.tsv", [("a", server.url("png", "a")), ("b", server.url("missing", "b"))]
    )
    paired = tmp_path / "paired"
    args = ["data", "download", "paired", "--tsv", str(tsv), "--out", str(paired), "--image-size", "16"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "1 fetched, 1 failed" in captured.out and "downloading" in captured.err
    assert main(["data", "download", "paired", "--out", str(tmp_path / "x"), "--offline",
                 "--cache-dir", str(cache)]) == 2  # fmt: skip
    assert "Mars-VL-Pairs" in capsys.readouterr().err

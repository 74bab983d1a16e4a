"""The three services as real uvicorn servers on loopback, driven through the client and CLI."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from marsbench.cli.main import main
from marsbench.cli.run import model_reference, run_task
from marsbench.cli.stack import LocalStack, StackUrls
from marsbench.client import ApiError, EncoderClient, EvaluatorClient, IndexerClient
from marsbench.schemas.datauri import encode_data_uri
from marsbench.schemas.jobs import JobCreate, TaskName
from marsbench.schemas.search import SearchRequest
from tests.conftest import png_bytes

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def checkpoint(tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fine-tuning checkpoint as open_clip's trainer writes it (`state_dict`, `module.` keys)."""
    import open_clip
    import torch

    torch.manual_seed(7)
    model = open_clip.create_model(f"local-dir:{tiny_clip_dir}")
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.05)
    path = tmp_path_factory.mktemp("ckpt") / "finetuned.pt"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackUrls]:
    with LocalStack(data_dir=tmp_path_factory.mktemp("state")) as urls:
        yield urls


def test_run_landform_end_to_end_then_reuse(
    stack: StackUrls, tiny_clip_ref: str, checkpoint: Path, landform_folders: Path, tmp_path: Path
) -> None:
    model = model_reference(tiny_clip_ref, checkpoint)
    record, path = run_task(
        stack, task=TaskName.LANDFORM, dataset_dir=landform_folders, model=model, out_dir=tmp_path
    )
    saved = json.loads(path.read_text())
    assert saved["task"] == "landform" and saved["model"] == model
    assert set(saved["metrics"]) == {"mAP", "r_precision", "ndcg@10", "hit@10"}
    assert all(0.0 <= v <= 1.0 for v in saved["metrics"].values())
    assert set(saved["per_class"]) == {"crater", "yardang", "alluvial_fan"}
    assert saved["indexing"]["skipped"] == 1
    assert saved["indexing"]["skipped_items"][0]["key"] == "crater/broken.png"
    # The evaluator asked the indexer whether the collection was complete before evaluating it.
    assert saved["indexing"]["state"] == "succeeded" and saved["indexing"]["done"] == 15
    assert saved["forced"] is False
    # The weights behind the numbers, by content: the fine-tuned checkpoint's sha256 from the encoder.
    hashes = saved["provenance"]["model"]["weights_sha256"]
    assert hashes["finetuned.pt"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    # ...and the preprocessing and precision behind the vectors, for the queries and the collection.
    model_part = saved["provenance"]["model"]
    assert model_part["preprocessing"].startswith("open_clip transforms on PIL images: ")
    assert "Resize" in model_part["preprocessing"] and "Normalize" in model_part["preprocessing"]
    assert model_part["indexed_preprocessing"] == model_part["preprocessing"]
    assert model_part["precision"] == model_part["indexed_precision"] == "fp32"
    assert record.counts["images"] == 15

    again, _ = run_task(
        stack, task=TaskName.LANDFORM, dataset_dir=landform_folders, model=model, out_dir=tmp_path
    )
    assert again.collection == record.collection
    assert again.metrics == record.metrics  # same collection, same queries: identical numbers
    with IndexerClient(stack.indexer, retries=0) as indexer:
        collections = {c.name: c for c in indexer.collections()}
        assert collections[record.collection].points == 15 and collections[record.collection].complete
        job = indexer.jobs(collection=record.collection)[-1]  # one per run_task, the newest last
        assert job.state == "succeeded" and indexer.jobs(collection="no-such-collection") == []
        with pytest.raises(ApiError) as refused:
            indexer.resume(job.id)  # only a failed job resumes
        assert refused.value.status == 409 and "already complete" in refused.value.message


def test_interactive_search_by_text_and_image(
    stack: StackUrls, tiny_clip_ref: str, landform_folders: Path, tmp_path: Path
) -> None:
    record, _ = run_task(
        stack, task=TaskName.LANDFORM, dataset_dir=landform_folders, model=tiny_clip_ref, out_dir=tmp_path
    )
    with EvaluatorClient(stack.evaluator) as evaluator:
        by_text = evaluator.search(
            SearchRequest(collection=record.collection, model=tiny_clip_ref, text="a crater", k=4)
        )
        assert len(by_text.hits) == 4
        assert all({"name", "label"} <= set(hit.payload) for hit in by_text.hits)
        scores = [hit.score for hit in by_text.hits]
        assert scores == sorted(scores, reverse=True)
        image = (landform_folders / "yardang" / "yardang_2.png").read_bytes()
        by_image = evaluator.search(
            SearchRequest(
                collection=record.collection, model=tiny_clip_ref, image=encode_data_uri(image), k=1
            )
        )
        assert by_image.hits[0].payload["name"] == "yardang/yardang_2.png"  # an image finds itself first
        assert by_image.hits[0].score == pytest.approx(1.0, abs=1e-4)

        # What the search page builds on, through the Python client: the collections with their
        # model, and the thumbnail of a hit, read back from the dataset it was indexed from.
        listed = {c.name: c for c in evaluator.collections()}[record.collection]
        assert (listed.model, listed.task, listed.state, listed.images) == (
            tiny_clip_ref,
            "landform",
            "succeeded",
            True,
        )
        thumbnail = evaluator.point_image(record.collection, by_image.hits[0].id, size=32)
        with Image.open(io.BytesIO(thumbnail)) as decoded:
            assert decoded.format == "JPEG" and max(decoded.size) == 32  # from 40 px


def test_errors_cross_the_wire_with_their_status(
    stack: StackUrls, tiny_clip_ref: str, tmp_path: Path
) -> None:
    with IndexerClient(stack.indexer, retries=0) as indexer, pytest.raises(ApiError) as caught:
        indexer.create_job(
            JobCreate(task=TaskName.LANDFORM, model="marsbench-tiny", dataset_dir=str(tmp_path / "x"))
        )
    assert caught.value.status == 422 and "does not exist" in caught.value.message
    with EncoderClient(stack.encoder, retries=0) as encoder:
        with pytest.raises(ApiError) as unknown:
            encoder.embed_texts("no-such-model", ["x"])
        assert unknown.value.status == 404
        with pytest.raises(ApiError) as bad_image:
            encoder.embed_images(tiny_clip_ref, [png_bytes(1), b"nope"])
        assert bad_image.value.status == 422 and bad_image.value.detail["index"] == 1


def test_cli_run_prints_the_table_and_writes_the_record(
    stack: StackUrls,
    tiny_clip_ref: str,
    checkpoint: Path,
    landform_folders: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        [
            "run", "landform", "--dataset-dir", str(landform_folders), "--model", tiny_clip_ref,
            "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out"),
            "--indexer-url", stack.indexer, "--evaluator-url", stack.evaluator,
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "mean" in out and "crater" in out and "skipped while indexing: 1" in out
    assert len(list((tmp_path / "out").glob("landform-*.json"))) == 1


def test_cli_jobs_lists_watches_and_refuses_to_resume_a_finished_job(
    stack: StackUrls, tiny_clip_ref: str, landform_folders: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with IndexerClient(stack.indexer) as indexer:
        job = indexer.create_job(
            JobCreate(task=TaskName.LANDFORM, model=tiny_clip_ref, dataset_dir=str(landform_folders))
        )
    assert main(["jobs", "watch", job.id, "--indexer-url", stack.indexer]) == 0
    captured = capsys.readouterr()
    assert f"job {job.id} succeeded: 15 items" in captured.out
    assert "[succeeded] [########################] 100.0% 15/16" in captured.err  # the bar, non-tty

    assert main(["jobs", "--indexer-url", stack.indexer]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:2] == ["job", "state"] and job.id in table

    assert main(["jobs", "resume", job.id, "--indexer-url", stack.indexer]) == 2
    assert "409" in capsys.readouterr().err
    assert main(["jobs", "resume", "--indexer-url", stack.indexer]) == 2
    assert "needs a job id" in capsys.readouterr().err


def test_cli_reports_a_missing_checkpoint_as_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "landform", "--dataset-dir", str(tmp_path), "--model", "open_clip:ViT-S-32",
                 "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path)])  # fmt: skip
    assert code == 2
    assert "checkpoint file" in capsys.readouterr().err


@pytest.fixture
def paired_shards(tmp_path: Path) -> Path:
    """Two WebDataset shards of 6 pairs, plus a sample without caption and one without image."""
    import io
    import tarfile

    root = tmp_path / "paired"
    root.mkdir()

    def add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))

    for shard in range(2):
        with tarfile.open(root / f"{shard:06d}.tar", "w") as archive:
            for i in range(3):
                key = f"{shard:04d}{i:05d}"
                add(archive, f"{key}.png", png_bytes(10 * shard + i, pattern=i))
                caption = {"key": key, "refined_caption": f"pattern {i} in shard {shard}", "ori_caption": "x"}
                add(archive, f"{key}.json", json.dumps(caption).encode())
            if shard == 1:
                add(archive, "000100099.png", png_bytes(99))  # no caption
                add(archive, "000100098.json", json.dumps({"refined_caption": "no image"}).encode())
    return root


def test_run_paired_end_to_end_reports_skipped_samples(
    stack: StackUrls, tiny_clip_ref: str, checkpoint: Path, paired_shards: Path, tmp_path: Path
) -> None:
    model = model_reference(tiny_clip_ref, checkpoint)
    record, path = run_task(
        stack, task=TaskName.PAIRED, dataset_dir=paired_shards, model=model, out_dir=tmp_path / "out",
        caption_key="refined_caption",
    )  # fmt: skip
    saved = json.loads(path.read_text())
    assert saved["task"] == "paired" and saved["model"] == model and saved["caption_key"] == "refined_caption"
    assert set(saved["metrics"]) == {
        "i2t_r1", "i2t_r10", "i2t_medr", "i2t_mrr", "t2i_r1", "t2i_r10", "t2i_medr", "t2i_mrr"
    }  # fmt: skip
    assert saved["counts"]["pairs"] == 6
    assert saved["skipped"] == 2
    assert sorted(item["key"] for item in saved["indexing"]["skipped_items"]) == ["000100098", "000100099"]
    assert all(1 <= saved["metrics"][k] <= 6 for k in ("i2t_medr", "t2i_medr"))
    assert saved["metrics"]["i2t_r10"] == 1.0  # 6 candidates: every partner is within the top 10
    # another caption key is another data variant, so another collection
    other, _ = run_task(
        stack, task=TaskName.PAIRED, dataset_dir=paired_shards, model=model, out_dir=tmp_path / "out",
        caption_key="ori_caption",
    )  # fmt: skip
    assert other.collection != record.collection and other.caption_key == "ori_caption"


# -- what users of OpenAI-compatible tools expect (issue 18, item 3) ------------------------------


def test_the_openai_sdk_reads_marsbench_errors_and_embeds(stack: StackUrls, tiny_clip_ref: str) -> None:
    """The real openai SDK against the real encoder on 127.0.0.1: before issue 18 it showed only
    "Error code: 404" for an unknown model; now its error carries marsbench's message and type."""
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{stack.encoder}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="no-such-model", input="a crater")
    with EncoderClient(stack.encoder, retries=0) as encoder, pytest.raises(ApiError) as ours:
        encoder.model_info("no-such-model")
    error = caught.value
    assert isinstance(error, openai.APIError) and error.status_code == 404
    assert isinstance(error.body, dict) and error.body["message"] == ours.value.message  # marsbench's words
    assert "no-such-model" in error.message and ours.value.message in error.message
    assert (error.type, error.code, error.param) == ("UnknownModel", "unknown_model", "model")
    assert ours.value.code == "unknown_model" and ours.value.param == "model"

    answer = client.embeddings.create(model=tiny_clip_ref, input=["a crater", "a yardang"])
    assert [d.index for d in answer.data] == [0, 1] and len(answer.data[0].embedding) == 16
    assert answer.model == tiny_clip_ref
    with pytest.raises(openai.UnprocessableEntityError) as sized:
        client.embeddings.create(model=tiny_clip_ref, input="a crater", dimensions=8)
    assert sized.value.param == "dimensions" and "does not shorten" in str(sized.value.body)


def test_every_service_answers_health(stack: StackUrls) -> None:
    import httpx

    for url in (stack.encoder, stack.indexer, stack.evaluator):
        assert httpx.get(f"{url}/health").json() == {"status": "ok"}, url


def test_an_unknown_collection_is_a_404(stack: StackUrls, tiny_clip_ref: str) -> None:
    query = SearchRequest(collection="no-such-collection", model=tiny_clip_ref, text="a crater")
    with EvaluatorClient(stack.evaluator, retries=0) as evaluator, pytest.raises(ApiError) as caught:
        evaluator.search(query)
    assert caught.value.status == 404 and caught.value.error == "NotIndexed"
    assert "no-such-collection" in caught.value.message and "GET /v1/collections" in caught.value.message

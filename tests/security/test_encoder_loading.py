"""Issue 17, items 1 and 2: model loading never hangs, and a request cannot make the encoder read or
unpickle files outside the model roots; permanent load failures are a 4xx, never a retried 503."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from marsbench.encoder.app import create_app
from marsbench.encoder.core.batcher import DynamicBatcher
from marsbench.encoder.core.engine import EncoderEngine
from marsbench.encoder.errors import (
    ForwardFailed,
    InvalidInput,
    ModelPathNotAllowed,
    ModelUnusable,
)
from marsbench.encoder.registry import ModelSpec, registered_specs
from marsbench.encoder.settings import EncoderSettings
from tests.conftest import png_bytes
from tests.security.conftest import TINY

# Every await below is bounded: before the fix these calls hung forever.
BOUND_S = 20.0


def engine_over(tiny_clip_dir: Path, **settings: Any) -> EncoderEngine:
    specs = registered_specs()
    specs[TINY] = ModelSpec(name=TINY, family="open_clip", source=f"local-dir:{tiny_clip_dir}")
    return EncoderEngine(EncoderSettings(**{"device": "cpu", "max_wait_ms": 1} | settings), specs=specs)


def tiny_state(tiny_clip_dir: Path) -> dict[str, torch.Tensor]:
    import open_clip

    return dict(open_clip.create_model(f"local-dir:{tiny_clip_dir}").state_dict())


def _plant(path: str) -> dict[str, object]:
    """What a hostile pickle runs when fully unpickled: here it only leaves a file behind."""
    Path(path).write_text("code ran")
    return {}


class Planted:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return _plant, (str(self.marker),)


def pickled_checkpoint(path: Path, tiny_clip_dir: Path, marker: Path) -> Path:
    torch.save({"state_dict": tiny_state(tiny_clip_dir), "extra": Planted(marker)}, path)
    return path


# -- item 1: no hang -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_checkpoint_without_weights_fails_clearly_and_does_not_hang(tmp_path: Path) -> None:
    """`torch.save({'state_dict': {}})` passes the weights-only loader; open_clip then raised
    StopIteration in the loading thread, which no future can carry: the request and every later one
    for that reference waited forever."""
    empty = tmp_path / "empty.pt"
    torch.save({"state_dict": {}}, empty)
    async with EncoderEngine(EncoderSettings(device="cpu")) as engine:
        for _ in range(2):  # the second request must not wait on a lock the first never released
            with pytest.raises(ModelUnusable, match="holds no weights"):
                await asyncio.wait_for(engine.model(f"marsbench-tiny@{empty}"), BOUND_S)
        assert (await asyncio.wait_for(engine.model("marsbench-tiny"), BOUND_S)).model.dimension == 128


def test_a_checkpoint_without_weights_is_a_422_over_http(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pt"
    torch.save({"state_dict": {}}, empty)
    engine = EncoderEngine(EncoderSettings(device="cpu"))
    with TestClient(create_app(engine=engine)) as client:
        answer = client.post("/v1/embeddings", json={"model": f"marsbench-tiny@{empty}", "input": "x"})
        assert answer.status_code == 422, answer.text
        assert "holds no weights" in answer.json()["error"]["message"]


@pytest.mark.anyio
async def test_stop_iteration_in_the_forward_thread_fails_the_request() -> None:
    def forward(items: list[int]) -> np.ndarray:
        raise StopIteration

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        batcher: DynamicBatcher[int] = DynamicBatcher(
            "m/text", forward, executor=pool, max_batch_size=4, max_wait_s=0.001, max_queued_items=16
        )
        with pytest.raises(ForwardFailed, match="StopIteration"):
            await asyncio.wait_for(batcher.submit([1, 2]), BOUND_S)
        await batcher.close()


@pytest.mark.anyio
async def test_stop_iteration_in_preprocessing_names_the_image(tiny_clip_dir: Path) -> None:
    async with engine_over(tiny_clip_dir) as engine:
        served = await engine.model(TINY)

        def broken(image: object) -> torch.Tensor:
            raise StopIteration

        served.model.preprocess_image = broken  # type: ignore[method-assign]
        with pytest.raises(InvalidInput, match=r"input\[0\].*StopIteration"):
            await asyncio.wait_for(engine.embed_images(TINY, [png_bytes(1)]), BOUND_S)
        served.model.count_tokens = lambda texts: next(iter([]))  # type: ignore[method-assign]
        with pytest.raises(RuntimeError, match="StopIteration"):
            await asyncio.wait_for(engine.embed_texts(TINY, ["a crater"]), BOUND_S)


# -- item 2: paths in references ------------------------------------------------------------------


def test_client_named_checkpoints_are_never_unpickled(tiny_clip_dir: Path, tmp_path: Path) -> None:
    """With MARSBENCH_ENCODER_TRUST_CHECKPOINTS=1 a reference `<model>@<file>` ran the file's pickle;
    trust now covers only checkpoints the operator's registry files name."""
    root = tmp_path / "models"
    root.mkdir()
    marker = tmp_path / "pwned"
    ckpt = pickled_checkpoint(root / "evil.pt", tiny_clip_dir, marker)
    engine = engine_over(tiny_clip_dir, trust_checkpoints=True, model_roots=[str(root), str(tiny_clip_dir)])
    with TestClient(create_app(engine=engine)) as client:
        for ref in (f"{TINY}@{ckpt}", f"open_clip:local-dir:{tiny_clip_dir}@{ckpt}"):
            answer = client.post("/v1/embeddings", json={"model": ref, "input": "x"})
            assert answer.status_code == 422, answer.text
            assert "pickled objects" in answer.json()["error"]["message"]
        assert not marker.exists()


@pytest.mark.anyio
async def test_registry_checkpoints_stay_trusted_when_the_operator_says_so(
    tiny_clip_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    ckpt = pickled_checkpoint(tmp_path / "train.pt", tiny_clip_dir, marker)
    engine = engine_over(tiny_clip_dir, trust_checkpoints=True)
    engine._specs["finetuned"] = engine._specs[TINY].model_copy(
        update={"name": "finetuned", "checkpoint": ckpt}
    )
    async with engine:
        assert (await engine.model("finetuned")).model.dimension == 16
    assert marker.exists()  # the operator's own training checkpoint loads in full, as before


def test_paths_outside_the_model_roots_get_one_answer(tiny_clip_dir: Path, tmp_path: Path) -> None:
    """Outside the roots, an existing file, a missing one, a folder and a link leading out are
    refused alike, before the path is read: the status does not tell whether it exists."""
    root = tmp_path / "models"
    root.mkdir()
    outside = tmp_path / "outside.pt"
    torch.save({"state_dict": tiny_state(tiny_clip_dir)}, outside)
    (root / "link.pt").symlink_to(outside)
    refs = [
        f"{TINY}@/etc/passwd",
        f"{TINY}@/no/such/file.pt",
        f"{TINY}@{outside}",
        f"{TINY}@{root}/../outside.pt",
        f"{TINY}@{root}/link.pt",
        f"open_clip:local-dir:{tiny_clip_dir}",
        "open_clip:local-dir:/no/such/folder",
        f"open_clip:ViT-B-32:{outside}",
    ]
    engine = engine_over(tiny_clip_dir, model_roots=[str(root)])
    with TestClient(create_app(engine=engine)) as client:
        for ref in refs:
            for answer in (
                client.post("/v1/embeddings", json={"model": ref, "input": "x"}),
                client.get(f"/v1/models/{ref}", params={"load": "true"}),
            ):
                assert answer.status_code == 422, (ref, answer.text)
                message = answer.json()["error"]["message"]
                assert "MARSBENCH_ENCODER_MODEL_ROOTS" in message and str(root) in message, message
                assert "exist" not in message
        # The registry's own paths are the operator's: tiny-both lives outside the roots and serves.
        assert client.post("/v1/embeddings", json={"model": TINY, "input": "x"}).status_code == 200


def test_inside_the_roots_checkpoints_and_folders_load(tiny_clip_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "models"
    root.mkdir()
    good = root / "good.pt"
    torch.save({"state_dict": tiny_state(tiny_clip_dir)}, good)
    (root / "tiny").symlink_to(tiny_clip_dir)
    engine = engine_over(tiny_clip_dir, model_roots=[str(root), str(tiny_clip_dir)])
    with TestClient(create_app(engine=engine)) as client:
        for ref in (f"{TINY}@{good}", f"open_clip:local-dir:{tiny_clip_dir}@{good}"):
            assert client.post("/v1/embeddings", json={"model": ref, "input": "x"}).status_code == 200


def test_beyond_loopback_without_roots_references_name_no_paths(tiny_clip_dir: Path, tmp_path: Path) -> None:
    engine = engine_over(tiny_clip_dir, host="0.0.0.0", api_key="k3y-for-tests-0123456789abcdef")
    with pytest.raises(ModelPathNotAllowed, match="MARSBENCH_ENCODER_MODEL_ROOTS"):
        engine.resolve(f"{TINY}@{tmp_path}/x.pt")
    assert engine.resolve(TINY).name == TINY  # registered models need no roots


def test_unreadable_and_missing_files_are_a_4xx_never_a_500_or_503(
    tiny_clip_dir: Path, tmp_path: Path
) -> None:
    """On loopback with no roots any path may be named (as for datasets); what it holds still gets
    a permanent 4xx: `@/etc/passwd` was a 500 (IndexError in the unpickler), a missing file a 503."""
    partial = tmp_path / "partial.pt"
    torch.save({"state_dict": {"logit_scale": torch.tensor(1.0)}}, partial)
    cases = {
        f"{TINY}@/etc/passwd": "not a weights file",
        f"{TINY}@{tmp_path}/missing.pt": "does not exist",
        f"{TINY}@{partial}": "lacks",
        "open_clip:No-Such-Arch": "unknown open_clip architecture",
        "open_clip:ViT-B-32:no-such-tag": "unknown pretrained tag",
        f"open_clip:local-dir:{tmp_path}/nothing": "does not exist",
    }
    engine = engine_over(tiny_clip_dir)
    with TestClient(create_app(engine=engine)) as client:
        for ref, expected in cases.items():
            answer = client.post("/v1/embeddings", json={"model": ref, "input": "x"})
            assert answer.status_code == 422, (ref, answer.text)
            assert expected in answer.json()["error"]["message"], (ref, answer.json())

"""The encoder's HTTP contract, in-process (FastAPI TestClient runs the real lifespan)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from marsbench.encoder.app import create_app
from marsbench.encoder.core.engine import EncoderEngine
from marsbench.encoder.registry import ModelSpec, registered_specs
from marsbench.encoder.settings import EncoderSettings
from marsbench.schemas.common import Modality
from marsbench.schemas.datauri import encode_data_uri
from marsbench.schemas.embeddings import BINARY_DIM_HEADER, BINARY_ROWS_HEADER
from tests.conftest import png_bytes


@pytest.fixture
def client(tiny_clip_dir: Path) -> Iterator[TestClient]:
    specs = registered_specs()
    source = f"local-dir:{tiny_clip_dir}"
    specs["tiny-both"] = ModelSpec(name="tiny-both", family="open_clip", source=source)
    specs["tiny-image-only"] = ModelSpec(
        name="tiny-image-only", family="open_clip", source=source, modalities=frozenset({Modality.IMAGE})
    )
    engine = EncoderEngine(EncoderSettings(preload=["tiny-both"], max_wait_ms=1), specs=specs)
    with TestClient(create_app(engine=engine)) as test_client:
        yield test_client


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_models_lists_registered_models_loaded_or_not(client: TestClient) -> None:
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert {"marsbench-tiny", "tiny-both", "tiny-image-only"} <= set(models)
    assert models["tiny-both"]["loaded"] is True and models["tiny-both"]["dimension"] == 16
    assert models["tiny-image-only"]["loaded"] is False
    assert models["tiny-image-only"]["modalities"] == ["image"]


def test_text_embeddings_are_openai_shaped_and_normalised(client: TestClient) -> None:
    response = client.post("/v1/embeddings", json={"model": "tiny-both", "input": ["a crater", "a yardang"]})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list" and body["model"] == "tiny-both"
    assert [d["index"] for d in body["data"]] == [0, 1]
    vectors = np.array([d["embedding"] for d in body["data"]])
    assert vectors.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert body["usage"]["prompt_tokens"] > 0


def test_base64_encoding_matches_float_encoding(client: TestClient) -> None:
    request = {"model": "tiny-both", "input": "a pitted cone"}
    floats = client.post("/v1/embeddings", json=request).json()["data"][0]["embedding"]
    packed = client.post("/v1/embeddings", json={**request, "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, floats, rtol=0, atol=0)


def test_image_data_uri_and_binary_path_agree(client: TestClient) -> None:
    images = [png_bytes(1), png_bytes(2, pattern=2)]
    json_body = client.post(
        "/v1/embeddings",
        json={"model": "tiny-both", "modality": "image", "input": [encode_data_uri(i) for i in images]},
    ).json()
    via_json = np.array([d["embedding"] for d in json_body["data"]], dtype=np.float32)
    files = [("images", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    binary = client.post("/v1/embeddings/images", data={"model": "tiny-both"}, files=files)
    assert binary.status_code == 200
    assert binary.headers[BINARY_ROWS_HEADER] == "2" and binary.headers[BINARY_DIM_HEADER] == "16"
    via_binary = np.frombuffer(binary.content, dtype="<f4").reshape(2, 16)
    np.testing.assert_allclose(via_binary, via_json, atol=1e-6)


def test_unknown_model_is_404_listing_known_models(client: TestClient) -> None:
    response = client.post("/v1/embeddings", json={"model": "nope", "input": "x"})
    assert response.status_code == 404
    assert "tiny-both" in response.json()["error"]["detail"]["known"]


def test_modality_the_model_lacks_is_422(client: TestClient) -> None:
    response = client.post("/v1/embeddings", json={"model": "tiny-image-only", "input": "a crater"})
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "UnsupportedModality"


def test_undecodable_image_is_422_naming_its_index_and_the_worker_survives(client: TestClient) -> None:
    files = [
        ("images", ("ok.png", png_bytes(3), "image/png")),
        ("images", ("bad.png", b"not an image", "image/png")),
    ]
    response = client.post("/v1/embeddings/images", data={"model": "tiny-both"}, files=files)
    assert response.status_code == 422
    assert response.json()["error"]["detail"]["index"] == 1
    assert "input[1]" in response.json()["error"]["message"]
    again = client.post("/v1/embeddings/images", data={"model": "tiny-both"}, files=files[:1])
    assert again.status_code == 200


def test_bad_base64_and_unknown_fields_are_422(client: TestClient) -> None:
    bad = client.post("/v1/embeddings", json={"model": "tiny-both", "modality": "image", "input": ["%%%"]})
    assert bad.status_code == 422 and bad.json()["error"]["detail"]["index"] == 0
    extra = client.post("/v1/embeddings", json={"model": "tiny-both", "input": "x", "temperature": 1})
    assert extra.status_code == 422


def test_lazy_load_of_an_ad_hoc_checkpointed_model(
    client: TestClient, tiny_clip_dir: Path, tmp_path: Path
) -> None:
    import open_clip
    import torch

    model = open_clip.create_model(f"local-dir:{tiny_clip_dir}")
    state = {f"module.{k}": v * 0 + 0.01 if k == "logit_scale" else v for k, v in model.state_dict().items()}
    ckpt = tmp_path / "ft.pt"
    torch.save({"epoch": 3, "state_dict": state}, ckpt)
    ref = f"open_clip:local-dir:{tiny_clip_dir}@{ckpt}"
    body = client.post("/v1/embeddings", json={"model": ref, "input": "x"}).json()
    assert body["model"] == ref and len(body["data"][0]["embedding"]) == 16
    listed = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert ref in listed
    size = ckpt.stat().st_size
    assert f"ft.pt:{size}:" in listed[ref]["weights"]  # the checkpoint's identity, for stale-index checks


def test_checkpoint_missing_weights_is_refused(
    client: TestClient, tiny_clip_dir: Path, tmp_path: Path
) -> None:
    import torch

    ckpt = tmp_path / "partial.pt"
    torch.save({"state_dict": {"logit_scale": torch.tensor(1.0)}}, ckpt)
    response = client.post(
        "/v1/embeddings", json={"model": f"open_clip:local-dir:{tiny_clip_dir}@{ckpt}", "input": "x"}
    )
    assert response.status_code == 422  # permanent: a 503 had clients and jobs retry it for minutes
    assert "lacks" in response.json()["error"]["message"]


def test_models_lists_the_benchmark_encoders_with_their_facts(client: TestClient) -> None:
    from tests.encoder.test_registry import BENCHMARK_MODELS

    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert BENCHMARK_MODELS | {"marsbench-tiny"} <= set(models)
    aimv2 = models["aimv2-large-patch14-224-lit"]
    assert aimv2["revision"] == "c2cd59a786c4c06f39d199c50d08cc2eab9f8605"
    assert aimv2["source"] == "hf-hub:apple/aimv2-large-patch14-224-lit"
    assert models["marscope"]["status"] == "needs checkpoint"


def test_a_card_without_loading_answers_from_the_registry(client: TestClient) -> None:
    card = client.get("/v1/models/dinov3-vitl16", params={"load": "false"}).json()
    assert (card["modalities"], card["loaded"], card["status"], card["dimension"]) == (
        ["image"],
        False,
        "available",
        1024,
    )
    refused = client.post("/v1/embeddings", json={"model": "dinov3-vitl16", "input": ["a crater"]})
    assert refused.status_code == 422 and "supports: image" in refused.json()["error"]["message"]


@pytest.mark.parametrize(
    ("field", "message"),
    [("instruction", "takes no instruction"), ("prompt_name", "has no prompt named 'query'")],
)
def test_prompt_options_a_model_lacks_are_refused(client: TestClient, field: str, message: str) -> None:
    value = "Find an image." if field == "instruction" else "query"
    response = client.post("/v1/embeddings", json={"model": "tiny-both", "input": ["a crater"], field: value})
    assert response.status_code == 422 and message in response.json()["error"]["message"]
    files = [("images", ("0.png", png_bytes(1), "image/png"))]
    binary = client.post("/v1/embeddings/images", data={"model": "tiny-both", field: value}, files=files)
    assert binary.status_code == 422 and message in binary.json()["error"]["message"]


def test_mllm_cards_show_their_default_instructions_without_loading(client: TestClient) -> None:
    card = client.get("/v1/models/gme-qwen2-vl-2b", params={"load": "false"}).json()
    assert card["prompts"]["text_instruction"] == "Find an image that matches the given text."
    assert card["prompts"]["image_instruction"] == "You are a helpful assistant."
    assert card["loaded"] is False


def test_float16_on_the_wire_halves_the_bytes_and_keeps_the_ranking(client: TestClient) -> None:
    request = {"model": "tiny-both", "input": ["a pitted cone", "a crater"], "encoding_format": "base64"}
    full = client.post("/v1/embeddings", json=request).json()["data"]
    half = client.post("/v1/embeddings", json={**request, "dtype": "float16"}).json()["data"]
    for a, b in zip(full, half, strict=True):
        exact = np.frombuffer(base64.b64decode(a["embedding"]), dtype="<f4")
        packed = base64.b64decode(b["embedding"])
        assert len(packed) * 2 == exact.nbytes
        np.testing.assert_allclose(np.frombuffer(packed, dtype="<f2"), exact, atol=1e-3)
    files = [("images", (f"{i}.png", png_bytes(i), "image/png")) for i in range(2)]
    wide = client.post("/v1/embeddings/images", data={"model": "tiny-both"}, files=files)
    narrow = client.post(
        "/v1/embeddings/images", data={"model": "tiny-both", "dtype": "float16"}, files=files
    )
    assert narrow.headers["x-embedding-dtype"] == "float16" and len(narrow.content) * 2 == len(wide.content)
    np.testing.assert_allclose(
        np.frombuffer(narrow.content, dtype="<f2"), np.frombuffer(wide.content, dtype="<f4"), atol=1e-3
    )


# -- what users of OpenAI-compatible tools expect (issue 18, item 3) ------------------------------


def test_errors_are_in_openai_shape_with_marsbench_detail(client: TestClient) -> None:
    response = client.post("/v1/embeddings", json={"model": "nope", "input": "x"})
    assert response.status_code == 404
    body = response.json()
    assert set(body) == {"error"}  # nothing beside it: OpenAI clients read body["error"]
    error = body["error"]
    assert (error["type"], error["code"], error["param"]) == ("UnknownModel", "unknown_model", "model")
    assert "nope" in error["message"] and "tiny-both" in error["detail"]["known"]
    invalid = client.post("/v1/embeddings", json={"model": "tiny-both", "input": "x", "temperature": 1})
    error = invalid.json()["error"]
    assert (error["type"], error["code"]) == ("ValidationError", "validation_error")
    assert error["param"] == "temperature"
    assert error["detail"]["errors"][0]["loc"] == ["body", "temperature"]
    routing = client.get("/v1/no-such-route").json()["error"]
    assert (routing["type"], routing["code"], routing["param"], routing["detail"]) == (
        "NotFound",
        "not_found",
        None,
        None,
    )


def test_health_is_an_alias_of_healthz(client: TestClient) -> None:
    assert client.get("/health").json() == client.get("/healthz").json() == {"status": "ok"}


def test_a_model_card_does_not_load_the_model_unless_asked(client: TestClient) -> None:
    engine: EncoderEngine = client.app.state.engine  # type: ignore[attr-defined]
    card = client.get("/v1/models/tiny-image-only").json()
    assert card["loaded"] is False and card["modalities"] == ["image"]
    assert "tiny-image-only" not in engine.loaded_models()  # answered from the registry
    loaded = client.get("/v1/models/tiny-image-only", params={"load": "true"}).json()
    assert loaded["loaded"] is True and loaded["dimension"] == 16


def test_dimensions_is_accepted_only_at_the_models_own_size(client: TestClient) -> None:
    same = client.post("/v1/embeddings", json={"model": "tiny-both", "input": "x", "dimensions": 16})
    assert same.status_code == 200 and len(same.json()["data"][0]["embedding"]) == 16
    other = client.post("/v1/embeddings", json={"model": "tiny-both", "input": "x", "dimensions": 8})
    assert other.status_code == 422, other.text
    error = other.json()["error"]
    assert error["param"] == "dimensions" and error["type"] == "InvalidInput"
    assert "dimensions=8 is not supported" in error["message"] and "gives 16" in error["message"]


@pytest.mark.parametrize("tokens", [[1, 2, 3], [[1, 2], [3]], 7])
def test_token_id_input_is_a_422_saying_marsbench_takes_text(client: TestClient, tokens: object) -> None:
    response = client.post("/v1/embeddings", json={"model": "tiny-both", "input": tokens})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == "input" and "not token ids" in error["message"], error

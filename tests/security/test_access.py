"""Item 1 of issue 9: a bearer API key per deployment, required beyond loopback, compared in constant
time, refused with a clear 401; the Python client sends it, the indexer and evaluator forward it."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Route

from marsbench.client import ApiError, EncoderClient
from marsbench.encoder.app import create_app as create_encoder
from marsbench.encoder.settings import EncoderSettings
from marsbench.evaluator.api.ui import UI_PREFIX
from marsbench.evaluator.app import create_app as create_evaluator
from marsbench.evaluator.settings import EvaluatorSettings
from marsbench.indexer.app import create_app as create_indexer
from marsbench.indexer.settings import IndexerSettings
from marsbench.security import OPEN_PATHS, AccessSettings, StartupRefused, is_loopback, required_key
from tests.security.conftest import KEY

AUTH = {"Authorization": f"Bearer {KEY}"}


def settings(**fields: object) -> AccessSettings:
    return AccessSettings(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "lab-gpu-3", "10.0.0.1"])
def test_hosts_beyond_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_policy_open_on_loopback_without_a_key() -> None:
    assert required_key(settings()) is None


def test_policy_refuses_to_listen_beyond_loopback_without_a_key() -> None:
    with pytest.raises(StartupRefused, match="MARSBENCH_API_KEY"):
        required_key(settings(host="0.0.0.0"))
    with pytest.raises(StartupRefused, match="MARSBENCH_REQUIRE_API_KEY=true"):
        required_key(settings(require_api_key="true"))


def test_policy_open_beyond_loopback_only_when_explicitly_allowed() -> None:
    assert required_key(settings(host="0.0.0.0", require_api_key="false", api_key=KEY)) is None


def test_policy_a_set_key_is_required_even_on_loopback() -> None:
    assert required_key(settings(api_key=KEY)) == KEY
    assert required_key(settings(api_key=KEY, host="0.0.0.0")) == KEY


def test_policy_empty_key_is_no_key_and_short_keys_are_refused() -> None:
    assert required_key(settings(api_key="  ")) is None  # compose passes `MARSBENCH_API_KEY=` as ""
    with pytest.raises(StartupRefused, match="at least 16"):
        required_key(settings(api_key="short"))


def test_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARSBENCH_API_KEY", KEY)
    monkeypatch.setenv("MARSBENCH_HOST", "0.0.0.0")
    for cls in (EncoderSettings, IndexerSettings, EvaluatorSettings):
        loaded = cls()
        assert loaded.key() == KEY and loaded.host == "0.0.0.0"
        assert KEY not in repr(loaded)  # SecretStr: never in logs or tracebacks


def test_services_refuse_to_start_beyond_loopback_without_a_key(tmp_path: Path) -> None:
    with pytest.raises(StartupRefused):
        create_encoder(EncoderSettings(host="0.0.0.0"))
    with pytest.raises(StartupRefused):
        create_indexer(IndexerSettings(host="0.0.0.0", dataset_roots=[str(tmp_path)], data_dir=tmp_path))
    with pytest.raises(StartupRefused):
        create_evaluator(EvaluatorSettings(host="0.0.0.0", dataset_roots=[str(tmp_path)], data_dir=tmp_path))


def _apps(tmp_path: Path) -> dict[str, FastAPI]:
    backend = {"api_key": KEY, "data_dir": tmp_path}
    return {
        "encoder": create_encoder(EncoderSettings(api_key=KEY)),
        "indexer": create_indexer(IndexerSettings(**backend)),  # type: ignore[arg-type]
        "evaluator": create_evaluator(EvaluatorSettings(**backend)),  # type: ignore[arg-type]
    }


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def test_every_endpoint_but_the_probes_needs_the_key(tmp_path: Path) -> None:
    """Each route of each service (docs and OpenAPI included), without a key and with a wrong one."""
    for name, app in _apps(tmp_path).items():
        client = TestClient(app)  # no lifespan: a refused request never reaches a handler
        # The OpenAPI document lists every API route; plain routes (docs, metrics) come from app.routes.
        paths = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops}
        paths |= {(m, r.path) for r in app.routes if isinstance(r, Route) for m in r.methods or ()}
        assert len(paths) > 4, name
        for method, path in sorted(paths):
            if path in OPEN_PATHS or (name == "evaluator" and path == UI_PREFIX):
                continue  # the search page's static files: tests/security/test_ui_access.py
            for headers in ({}, {"Authorization": "Bearer wrong-key-0123456789"}, {"Authorization": KEY}):
                response = client.request(method, _concrete(path), headers=headers)
                assert response.status_code == 401, (name, method, path, headers, response.text)
                assert response.headers["WWW-Authenticate"].startswith('Bearer realm="marsbench"')


def test_probes_answer_without_a_key(make_encoder: object) -> None:
    client = make_encoder(api_key=KEY)  # type: ignore[operator]
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").json()["ready"] is True


def test_401_is_in_the_services_error_shape(make_encoder: object) -> None:
    client = make_encoder(api_key=KEY)  # type: ignore[operator]
    missing = client.get("/v1/models")
    assert missing.status_code == 401
    body = missing.json()["error"]
    assert body["type"] == "Unauthorized" and "Authorization: Bearer" in body["message"]
    assert body["message"].startswith("missing API key")
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="marsbench"'
    wrong = client.get("/v1/models", headers={"Authorization": "Bearer " + KEY[:-1] + "X"})
    assert wrong.status_code == 401 and wrong.json()["error"]["message"].startswith("invalid API key")
    assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    # Non-ASCII bytes in the header are compared like any others, not a 500.
    odd = client.get("/v1/models", headers={"Authorization": "Bearer \xe9\xff".encode("latin-1")})
    assert odd.status_code == 401


def test_the_right_key_is_let_in(make_encoder: object) -> None:
    client = make_encoder(api_key=KEY)  # type: ignore[operator]
    assert client.get("/v1/models", headers=AUTH).status_code == 200
    assert client.get("/v1/models", headers={"Authorization": f"bearer {KEY}"}).status_code == 200
    texts = client.post("/v1/embeddings", json={"model": "tiny-both", "input": ["dunes"]}, headers=AUTH)
    assert texts.status_code == 200


def test_a_request_without_the_key_is_refused_before_its_body_is_read(make_encoder: object) -> None:
    client = make_encoder(api_key=KEY, max_body_mb=0.001)  # type: ignore[operator]
    response = client.post("/v1/embeddings", content=b"x" * 10_000)
    assert response.status_code == 401  # not 413: nothing about the body is looked at first


def test_key_comparison_is_constant_time() -> None:
    source = Path(__import__("marsbench.security", fromlist=["x"]).__file__).read_text()
    assert "hmac.compare_digest(" in source and "== self._key" not in source


# -- the Python client ----------------------------------------------------------------------------


def _seen_headers(**client_args: object) -> httpx.Headers:
    seen: list[httpx.Headers] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(200, json={"data": []})

    with EncoderClient("http://encoder", transport=httpx.MockTransport(handler), **client_args) as client:
        client.models()
    return seen[0]


def test_client_sends_the_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "authorization" not in _seen_headers()
    monkeypatch.setenv("MARSBENCH_API_KEY", KEY)
    assert _seen_headers()["authorization"] == f"Bearer {KEY}"
    assert _seen_headers(api_key="other-key-0123456789")["authorization"] == "Bearer other-key-0123456789"
    monkeypatch.setenv("MARSBENCH_API_KEY", "")
    assert "authorization" not in _seen_headers()


def test_client_reports_a_401_as_an_api_error(make_encoder: object) -> None:
    client = make_encoder(api_key=KEY)  # type: ignore[operator]

    def via_app(request: httpx.Request) -> httpx.Response:
        answer = client.request(request.method, request.url.path, headers=dict(request.headers))
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    with (
        EncoderClient("http://encoder", transport=httpx.MockTransport(via_app), retries=0) as bad,
        pytest.raises(ApiError) as caught,
    ):
        bad.models()
    assert caught.value.status == 401 and caught.value.error == "Unauthorized"
    with EncoderClient("http://encoder", transport=httpx.MockTransport(via_app), api_key=KEY) as good:
        assert any(model.id == "tiny-both" for model in good.models())


def _encoder_client(holder: object, depth: int = 2) -> EncoderClient | None:
    """The EncoderClient a service object holds, itself or in an attribute, possibly inside the
    adapter that implements the service's port to the encoder."""
    if isinstance(holder, EncoderClient):
        return holder
    if depth == 0 or not hasattr(holder, "__dict__"):
        return None
    found = (_encoder_client(value, depth - 1) for value in vars(holder).values())
    return next((client for client in found if client is not None), None)


def test_indexer_and_evaluator_forward_the_key_to_the_encoder(tmp_path: Path) -> None:
    indexer_settings = IndexerSettings(api_key=KEY, data_dir=tmp_path / "i", resume_jobs=False)
    evaluator_settings = EvaluatorSettings(api_key=KEY, data_dir=tmp_path / "e")
    with TestClient(create_evaluator(evaluator_settings)) as evaluator:
        encoder_client = _encoder_client(evaluator.app.state.encoder)  # type: ignore[attr-defined]
        assert encoder_client is not None
        assert encoder_client._http.headers["authorization"] == f"Bearer {KEY}"
    with TestClient(create_indexer(indexer_settings)) as indexer:
        encoder_client = _encoder_client(indexer.app.state.jobs)  # type: ignore[attr-defined]
        assert encoder_client is not None
        assert encoder_client._http.headers["authorization"] == f"Bearer {KEY}"

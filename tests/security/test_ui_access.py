"""The search page's static files are the one thing besides the probes served without the API key;
everything under /v1, the page's own API calls included, still needs it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from marsbench.evaluator.api.ui import UI_HEADERS, UI_PREFIX
from marsbench.evaluator.app import create_app
from marsbench.evaluator.settings import EvaluatorSettings
from marsbench.security import is_static_path
from tests.security.conftest import KEY

AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(EvaluatorSettings(api_key=KEY, data_dir=tmp_path))) as opened:
        yield opened


def test_the_page_loads_without_a_key(client: TestClient) -> None:
    redirect = client.get(UI_PREFIX, follow_redirects=False)
    assert redirect.status_code == 308 and redirect.headers["location"] == "ui/"  # relative: proxies keep
    for path, kind in (
        ("/ui/", "text/html"),
        ("/ui/search.js", "javascript"),
        ("/ui/search.css", "text/css"),
    ):
        response = client.get(path)
        assert response.status_code == 200 and kind in response.headers["content-type"], path
        for header, value in UI_HEADERS.items():
            assert response.headers[header] == value
    assert client.head("/ui/search.js").status_code == 200
    assert client.get("/ui/nothing-here.js").status_code == 404


def test_the_csp_keeps_the_page_on_its_own_origin(client: TestClient) -> None:
    policy = client.get("/ui/").headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    assert "http" not in policy  # no other origin is allowed anything
    page = client.get("/ui/").text + client.get("/ui/search.js").text + client.get("/ui/search.css").text
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/collections"),
        ("GET", f"/v1/collections/c/points/{uuid.uuid4()}/image"),
        ("POST", "/v1/search"),
        ("GET", "/v1/runs"),
        ("POST", "/ui/"),  # only GET and HEAD of the static files are open
        ("GET", "/ui/%2E%2E/v1/collections"),  # reaches the app as /ui/../v1/collections
        ("GET", "/uix"),
        ("GET", "/metrics"),
    ],
)
def test_everything_else_still_needs_the_key(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path, json={} if method == "POST" else None)
    assert response.status_code == 401, response.text


def test_the_page_api_calls_work_with_the_key(client: TestClient) -> None:
    assert client.get("/v1/collections", headers=AUTH).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "static"),
    [
        ("GET", "/ui", True),
        ("GET", "/ui/", True),
        ("HEAD", "/ui/search.js", True),
        ("GET", "/ui/a/b.css", True),
        ("POST", "/ui/search.js", False),
        ("GET", "/ui/../v1/search", False),
        ("GET", "/ui/..", False),
        ("GET", "/ui\\..\\v1", False),
        ("GET", "/uiv1", False),
        ("GET", "/v1/ui/", False),
    ],
)
def test_static_paths(method: str, path: str, static: bool) -> None:
    assert is_static_path(method, path, ("/ui",)) is static

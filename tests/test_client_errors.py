"""The Python client reads the services' error body (issue 18's OpenAI shape) and older servers' flat one."""

from __future__ import annotations

import httpx

from marsbench.client._base import _api_error


def _answer(status: int, body: object) -> httpx.Response:
    return httpx.Response(status, json=body, request=httpx.Request("GET", "http://encoder/v1/models/x"))


def test_the_openai_shaped_body_is_read() -> None:
    body = {
        "error": {
            "message": "unknown model 'x'; GET /v1/models lists them",
            "type": "UnknownModel",
            "code": "unknown_model",
            "param": "model",
            "detail": {"known": ["marsbench-tiny"]},
        }
    }
    error = _api_error(_answer(404, body))
    assert (error.status, error.error) == (404, "UnknownModel")
    assert (error.code, error.param) == ("unknown_model", "model")
    assert error.message == body["error"]["message"] and error.detail == {"known": ["marsbench-tiny"]}
    assert str(error) == f"404 UnknownModel: {body['error']['message']}"


def test_an_older_servers_flat_body_is_still_read() -> None:
    body = {"error": "UnknownModel", "message": "unknown model 'x'", "detail": {"known": ["a"]}}
    error = _api_error(_answer(404, body))
    assert (error.error, error.message) == ("UnknownModel", "unknown model 'x'")
    assert error.detail == {"known": ["a"]}
    assert error.code is None and error.param is None


def test_other_bodies_fall_back_to_the_status_and_text() -> None:
    openai_like = _api_error(_answer(400, {"error": {"message": "bad", "type": None, "code": None}}))
    assert (openai_like.error, openai_like.message, openai_like.detail) == ("HTTPError", "bad", {})
    fastapi = _api_error(_answer(422, {"detail": [{"loc": ["body"], "msg": "x"}]}))
    assert fastapi.error == "ValidationError"
    text = httpx.Response(502, text="Bad Gateway", request=httpx.Request("GET", "http://x/"))
    assert _api_error(text).error == "HTTPError" and _api_error(text).message == "Bad Gateway"

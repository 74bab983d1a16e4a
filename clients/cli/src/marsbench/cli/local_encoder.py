"""Model cards without a running encoder: the encoder's own app, in this process, asked over HTTP.

Nothing listens and nothing is loaded: an `EncoderClient` sends its requests through starlette's
`TestClient` into the app the encoder's public factory builds, so the cards are exactly what
`GET /v1/models` of a deployed encoder with the same registry answers.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx
from starlette.testclient import TestClient

from marsbench.cli.extras import create_encoder_app, encoder_settings
from marsbench.client import EncoderClient
from marsbench.schemas.models import ModelInfo

_IN_PROCESS = "http://encoder.local"  # never resolved: each request is handed to the app


class InProcessTransport(httpx.BaseTransport):
    """An httpx transport into an ASGI app served by starlette's `TestClient` (which is an httpx
    client of its own, possibly of another httpx distribution, so requests are copied across)."""

    def __init__(self, app_client: TestClient) -> None:
        self._app = app_client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self._app.request(
            request.method,
            str(request.url),
            headers=list(request.headers.multi_items()),
            content=request.read(),
        )
        # The body arrives decoded; a Content-Encoding kept beside it would be decoded twice.
        headers = [(k, v) for k, v in answer.headers.multi_items() if k.lower() != "content-encoding"]
        return httpx.Response(answer.status_code, headers=headers, content=answer.content)


def local_model_cards(extra_registry: Sequence[str], *, what: str) -> list[ModelInfo]:
    """The cards of every model this installation's encoder would serve (built-ins, the files in
    MARSBENCH_ENCODER_REGISTRY, then `extra_registry`); `what` names the command in errors."""
    settings = encoder_settings(what)
    settings = settings.model_copy(
        update={
            "registry": [*settings.registry, *extra_registry],
            "preload": [],  # cards only: the lifespan loads nothing
            "host": "127.0.0.1",  # it listens nowhere, so it needs no key or dataset roots
        }
    )
    app = create_encoder_app(settings, what)
    with (
        TestClient(app, base_url=_IN_PROCESS) as app_client,
        EncoderClient(_IN_PROCESS, transport=InProcessTransport(app_client), retries=0) as encoder,
    ):
        return encoder.models()

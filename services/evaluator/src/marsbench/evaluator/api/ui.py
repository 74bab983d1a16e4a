"""The search page: static files under `/ui/`, calling the same `/v1` API as every other client.

The files hold no data, so they are served without the API key (`UI_PREFIX` is exempted in
`install_security`); every call the page makes goes to `/v1/*` with the key the user enters. The
Content-Security-Policy allows nothing but this origin (plus blob: and data: images, which the page
builds from fetched thumbnails and uploads), so the page works offline and cannot leak a query.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

UI_NAME = "ui"
UI_PREFIX = f"/{UI_NAME}"
UI_DIR = Path(__file__).resolve().parent.parent / "ui"

UI_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidated on every load: a new release's page never runs against a stale script.
    "Cache-Control": "no-cache",
}


class _UiFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(UI_HEADERS)
        return response


def install_ui(app: FastAPI) -> None:
    """Serve the page at `/ui/` (and send `/ui` there, so its relative links resolve)."""

    @app.get(UI_PREFIX, include_in_schema=False)
    def ui_root() -> RedirectResponse:
        # Relative, so it also holds behind a proxy that serves the evaluator under a path prefix.
        return RedirectResponse(f"{UI_NAME}/", status_code=308)

    app.mount(UI_PREFIX, _UiFiles(directory=UI_DIR, html=True), name="ui")

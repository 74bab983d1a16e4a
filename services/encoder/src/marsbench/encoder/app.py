"""`create_app(settings)`: the encoder service, with no side effects at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from marsbench.encoder.api.errors import install_error_handlers
from marsbench.encoder.api.router import api_router
from marsbench.encoder.core.engine import EncoderEngine
from marsbench.encoder.settings import EncoderSettings
from marsbench.observability import install_observability
from marsbench.security import install_security


def create_app(settings: EncoderSettings | None = None, *, engine: EncoderEngine | None = None) -> FastAPI:
    """Build the app; pass `engine` to inject one (e.g. with extra model specs in tests).

    The app's lifespan starts the engine (loading preloaded models) and stops it.
    """
    engine = engine or EncoderEngine(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()

    app = FastAPI(title="marsbench encoder", version="1", lifespan=lifespan)
    app.state.engine = engine
    install_error_handlers(app)
    app.include_router(api_router)
    install_security(app, engine.settings)  # before observability: its middleware then sees our 401s/413s
    install_observability(app, "encoder", engine=engine)
    return app

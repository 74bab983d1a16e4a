"""`create_app(settings)`: the evaluator service, with no side effects at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from marsbench.client import EncoderClient, IndexerClient
from marsbench.evaluator.adapters import HttpIndexingJobs, HttpQueryEncoder
from marsbench.evaluator.api.errors import install_error_handlers
from marsbench.evaluator.api.router import api_router
from marsbench.evaluator.api.ui import UI_PREFIX, install_ui
from marsbench.evaluator.core.runs import RunService
from marsbench.evaluator.core.thumbnails import PointImages
from marsbench.evaluator.core.warm_index import WarmIndexCache
from marsbench.evaluator.settings import EvaluatorSettings
from marsbench.observability import install_observability
from marsbench.security import install_security
from marsbench.store import VectorStore


def create_app(settings: EvaluatorSettings | None = None, *, store: VectorStore | None = None) -> FastAPI:
    """Build the app; pass `store` to share one already open (the embedded engine allows one owner)."""
    settings = settings or EvaluatorSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = store is None
        active_store = store or settings.open_store()
        encoder = HttpQueryEncoder(
            EncoderClient(settings.encoder_urls, timeout=settings.encoder_timeout_s, api_key=settings.key())
        )
        app.state.store = active_store
        app.state.encoder = encoder
        indexer = (
            HttpIndexingJobs(
                IndexerClient(settings.indexer_url, timeout=30, retries=2, api_key=settings.key())
            )
            if settings.indexer_url
            else None
        )
        warm = WarmIndexCache(int(settings.warm_index_gb * 2**30)) if settings.warm_index_gb > 0 else None
        app.state.runs = RunService(
            active_store,
            encoder,
            settings.runs_dir(),
            warm_indexes=warm,
            indexing=indexer,
            dataset_roots=app.state.dataset_roots.roots,  # set by install_security
        )
        app.state.indexing = indexer
        app.state.point_images = PointImages(
            active_store, indexer, dataset_roots=app.state.dataset_roots.roots
        )
        try:
            yield
        finally:
            encoder.close()
            if indexer is not None:
                indexer.close()
            if owned:
                active_store.close()

    app = FastAPI(title="marsbench evaluator", version="1", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(api_router)
    install_ui(app)
    # Before observability: its middleware then sees our 401s/413s. The page's static files hold no
    # data and need no key; the page sends the key on its API calls.
    install_security(app, settings, static_prefixes=(UI_PREFIX,))
    install_observability(app, "evaluator")
    return app

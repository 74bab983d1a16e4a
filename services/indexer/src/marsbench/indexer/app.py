"""`create_app(settings)`: the indexer service, with no side effects at import."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from marsbench.client import EncoderClient
from marsbench.indexer.adapters import HttpEncoder
from marsbench.indexer.api.errors import install_error_handlers
from marsbench.indexer.api.router import api_router
from marsbench.indexer.core.jobs import JobManager
from marsbench.indexer.settings import IndexerSettings
from marsbench.observability import install_observability
from marsbench.security import install_security
from marsbench.store import VectorStore


def create_app(settings: IndexerSettings | None = None, *, store: VectorStore | None = None) -> FastAPI:
    """Build the app; pass `store` to share one already open (the embedded engine allows one owner)."""
    settings = settings or IndexerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = store is None
        active_store = store or settings.open_store()
        encoder = HttpEncoder(
            EncoderClient(settings.encoder_urls, timeout=settings.encoder_timeout_s, api_key=settings.key())
        )
        jobs = JobManager(
            active_store,
            encoder,
            settings.data_dir / "jobs",
            batch_size=settings.index_batch_size,
            in_flight=settings.index_in_flight,
            retries=settings.job_retries,
            retry_backoff_s=settings.job_retry_backoff_s,
            dataset_roots=app.state.dataset_roots.roots,  # set by install_security
            min_free_disk_mb=settings.min_free_disk_mb,
            disk_path=settings.data_dir,
        )
        app.state.jobs = jobs
        if settings.resume_jobs:
            jobs.resume_unfinished()
        try:
            yield
        finally:
            # Off the event loop: in `marsbench serve` the encoder shares this loop, and a job waiting
            # for the encoder's answer can only reach its batch boundary while the loop still runs.
            await asyncio.to_thread(jobs.shutdown)
            encoder.close()
            if owned:
                active_store.close()

    app = FastAPI(title="marsbench indexer", version="1", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(api_router)
    install_security(app, settings)  # before observability: its middleware then sees our 401s/413s
    install_observability(app, "indexer")
    return app

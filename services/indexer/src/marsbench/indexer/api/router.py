"""Assembles the indexer's routers."""

from __future__ import annotations

from fastapi import APIRouter

from marsbench.http import probes_router
from marsbench.indexer.api.routes import collections, jobs

api_router = APIRouter()
api_router.include_router(probes_router())
api_router.include_router(jobs.router)
api_router.include_router(collections.router)

"""Assembles the indexer's routers."""

from __future__ import annotations

from fastapi import APIRouter

from marsbench.indexer.api.routes import collections, health, jobs

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(jobs.router)
api_router.include_router(collections.router)

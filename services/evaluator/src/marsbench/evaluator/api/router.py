"""Assembles the evaluator's routers."""

from __future__ import annotations

from fastapi import APIRouter

from marsbench.evaluator.api.routes import collections, maps, runs, search
from marsbench.http import probes_router

api_router = APIRouter()
api_router.include_router(probes_router())
api_router.include_router(runs.router)
api_router.include_router(search.router)
api_router.include_router(collections.router)
api_router.include_router(maps.router)

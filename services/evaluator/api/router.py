"""Assembles the evaluator's routers."""

from __future__ import annotations

from fastapi import APIRouter

from marsbench.evaluator.api.routes import health, runs, search

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(runs.router)
api_router.include_router(search.router)

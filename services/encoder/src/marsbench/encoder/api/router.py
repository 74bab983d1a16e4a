"""Assembles the encoder's routers."""

from __future__ import annotations

from fastapi import APIRouter

from marsbench.encoder.api.routes import embeddings, health, models

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(models.router)
api_router.include_router(embeddings.router)

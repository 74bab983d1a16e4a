"""Injectables as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from marsbench.evaluator.core.ports import IndexingJobs, QueryEncoder
from marsbench.evaluator.core.runs import RunService
from marsbench.evaluator.core.thumbnails import PointImages
from marsbench.store import VectorStore


def get_runs(request: Request) -> RunService:
    runs: RunService = request.app.state.runs
    return runs


def get_store(request: Request) -> VectorStore:
    store: VectorStore = request.app.state.store
    return store


def get_encoder(request: Request) -> QueryEncoder:
    encoder: QueryEncoder = request.app.state.encoder
    return encoder


def get_indexing(request: Request) -> IndexingJobs | None:
    indexing: IndexingJobs | None = getattr(request.app.state, "indexing", None)
    return indexing


def get_point_images(request: Request) -> PointImages:
    images: PointImages = request.app.state.point_images
    return images


RunsDep = Annotated[RunService, Depends(get_runs)]
StoreDep = Annotated[VectorStore, Depends(get_store)]
EncoderDep = Annotated[QueryEncoder, Depends(get_encoder)]
IndexingDep = Annotated[IndexingJobs | None, Depends(get_indexing)]
PointImagesDep = Annotated[PointImages, Depends(get_point_images)]

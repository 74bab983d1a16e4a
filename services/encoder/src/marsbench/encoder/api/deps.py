"""Injectables as `Annotated` aliases: a handler's signature lists what it needs."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from marsbench.encoder.core.engine import EncoderEngine


def get_engine(request: Request) -> EncoderEngine:
    engine: EncoderEngine = request.app.state.engine
    return engine


EngineDep = Annotated[EncoderEngine, Depends(get_engine)]

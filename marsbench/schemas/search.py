"""`POST /v1/search`: an interactive query against a live collection."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from marsbench.schemas.common import StrictModel


class SearchRequest(StrictModel):
    collection: str
    model: str = Field(description="The model the collection was indexed with (embeds the query).")
    text: str | None = None
    image: str | None = Field(default=None, description="A base64 data URI.")
    k: int = Field(default=10, ge=1, le=10_000)

    @model_validator(mode="after")
    def _one_query(self) -> SearchRequest:
        if (self.text is None) == (self.image is None):
            raise ValueError("give exactly one of 'text' or 'image'")
        return self


class SearchHit(BaseModel):
    id: str
    score: float
    payload: dict[str, object]


class SearchResponse(BaseModel):
    collection: str
    hits: list[SearchHit]

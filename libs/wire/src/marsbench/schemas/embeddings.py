"""`POST /v1/embeddings`: OpenAI's embeddings API shape, extended with `modality`.

Images travel as base64 data URIs in `input` here; bulk image traffic uses the binary endpoint
`POST /v1/embeddings/images` (multipart in, raw float32 out), whose framing is described by
`BINARY_*` below so the client and the service agree on one definition.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from marsbench.schemas.common import MAX_REF_CHARS, Modality, StrictModel

# The binary endpoint answers with N x D little-endian float32 rows; these headers give N and D.
BINARY_MEDIA_TYPE = "application/octet-stream"
BINARY_ROWS_HEADER = "x-embedding-rows"
BINARY_DIM_HEADER = "x-embedding-dim"
BINARY_MODEL_HEADER = "x-embedding-model"
BINARY_DTYPE_HEADER = "x-embedding-dtype"
# Little-endian numpy type strings of the wire dtypes: float16 halves the bytes, losing about 3
# significant digits (cosine changes below 1e-3), for callers that only rank.
WIRE_DTYPES = {"float32": "<f4", "float16": "<f2"}
WireDtype = Literal["float32", "float16"]


class EmbeddingRequest(StrictModel):
    model: str = Field(
        max_length=MAX_REF_CHARS,
        description="Registered model name or ad hoc reference (see GET /v1/models).",
    )
    input: str | list[str] = Field(
        description="Texts, or images as base64 data URIs. At most MARSBENCH_ENCODER_MAX_ITEMS_PER_REQUEST "
        "items and MARSBENCH_ENCODER_MAX_TEXT_CHARS characters a text (413 beyond)."
    )
    modality: Modality = Modality.TEXT
    encoding_format: Literal["float", "base64"] = "float"
    dtype: WireDtype = Field(
        default="float32",
        description="Element type of base64 embeddings: float32, or float16 (half the bytes).",
    )
    instruction: str | None = Field(
        default=None,
        max_length=2000,
        description="Instruction for models that take one (e.g. GME, Qwen3-VL-Embedding); default: the "
        "model's own (GET /v1/models/{id} lists it). Refused (422) by models without instructions.",
    )
    prompt_name: str | None = Field(
        default=None,
        max_length=100,
        description="Named prompt for models that define them (jina-embeddings-v4: 'query', 'passage').",
    )
    user: str | None = Field(default=None, max_length=256)
    dimensions: int | None = Field(
        default=None,
        ge=1,
        description="OpenAI's parameter: marsbench does not shorten embeddings, so it is accepted only "
        "when it equals the model's own dimension (GET /v1/models/{id}?load=true); else 422.",
    )

    @field_validator("input", mode="before")
    @classmethod
    def _not_token_ids(cls, value: object) -> object:
        # OpenAI also takes `input` as token ids (a list of ints, or of lists of ints): marsbench's
        # models tokenize for themselves, so say that instead of "Input should be a valid string".
        def token(item: object) -> bool:
            return isinstance(item, int) and not isinstance(item, bool)

        def ids(item: object) -> bool:
            return token(item) or (isinstance(item, list) and bool(item) and all(map(token, item)))

        if token(value) or (isinstance(value, list) and value and any(ids(v) for v in value)):
            raise ValueError(
                "marsbench takes text (or images as data URIs), not token ids: send the strings themselves"
            )
        return value

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("input must hold at least one item")
        return value

    def items(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: Usage

"""Types shared by several wire schemas."""

from __future__ import annotations

import unicodedata
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class Modality(StrEnum):
    TEXT = "text"
    IMAGE = "image"


# Model references, including ad hoc ones with a checkpoint path ('open_clip:<arch>@/path/to/ckpt.pt').
MAX_REF_CHARS = 1000
# Dataset folders named in requests (Linux's PATH_MAX), and each folder name in them (NAME_MAX, bytes).
MAX_PATH_CHARS = 4096
MAX_NAME_BYTES = 255


def _no_control_characters(path: str) -> str:
    # A NUL cannot reach the OS at all (`Path.resolve()` raises ValueError: a 500 before this), and a
    # newline or escape in a folder name is never a dataset but would forge log and job-record lines.
    for index, char in enumerate(path):
        if unicodedata.category(char) == "Cc":
            raise ValueError(
                f"dataset_dir holds a control character ({char!r}) at position {index}; "
                "give the folder's path as plain text"
            )
    # No file system holds a longer name: the OS answers "File name too long" (a 500 where a reader
    # asked it first), so it is refused here, for every service, naming the part.
    for part in path.split("/"):
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise ValueError(
                f"dataset_dir has a folder name of {len(part.encode('utf-8', 'surrogatepass'))} bytes "
                f"({part[:40]!r}...); names are at most {MAX_NAME_BYTES} bytes"
            )
    return path


DatasetDir = Annotated[
    str, Field(min_length=1, max_length=MAX_PATH_CHARS), AfterValidator(_no_control_characters)
]


class StrictModel(BaseModel):
    """Base of request models: unknown fields are rejected with a 422."""

    model_config = ConfigDict(extra="forbid")


class ErrorObject(BaseModel):
    """The error itself: OpenAI's `{message, type, param, code}`, plus marsbench's `detail`."""

    message: str = Field(description="What went wrong and what to fix.")
    type: str = Field(description="The kind of error, e.g. 'ValidationError', 'UnknownModel'.")
    code: str = Field(
        description="`type` in snake_case ('validation_error', 'unknown_model'): stable, for programs "
        "to match."
    )
    param: str | None = Field(
        default=None,
        description="The request field at fault where there is one ('model', 'input', 'dimensions').",
    )
    detail: dict[str, object] | None = Field(
        default=None,
        description="Machine-readable specifics: for a 'ValidationError', `errors` lists each bad field "
        "as {loc, msg, type, input}; others name e.g. the setting and limit, or the known models.",
    )


class ErrorBody(BaseModel):
    """Every error response, in OpenAI's shape (`{"error": {...}}`), so OpenAI-compatible clients
    (the openai SDK, LangChain, ...) show marsbench's message instead of only the status."""

    error: ErrorObject


class ReadyStatus(BaseModel):
    """`GET /readyz`: 200 when ready, 503 with the same body while preloaded models still load."""

    ready: bool
    loading: list[str] = Field(default_factory=list, description="Preloaded models not loaded yet.")

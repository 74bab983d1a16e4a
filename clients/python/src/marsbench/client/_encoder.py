"""Client of the encoder service."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

import numpy as np

from marsbench.client._base import BaseClient
from marsbench.schemas.common import Modality
from marsbench.schemas.embeddings import (
    BINARY_DIM_HEADER,
    BINARY_DTYPE_HEADER,
    BINARY_ROWS_HEADER,
    WIRE_DTYPES,
    EmbeddingRequest,
    EmbeddingResponse,
    WireDtype,
)
from marsbench.schemas.models import ModelInfo, ModelList


class EncoderClient(BaseClient):
    def models(self) -> list[ModelInfo]:
        return ModelList.model_validate(self.request("GET", "/v1/models").json()).data

    def model_info(self, model: str, *, load: bool = True) -> ModelInfo:
        """The model's card. With `load` (default) the encoder loads the model if needed, so the
        card carries its dimension; without, it answers from its registry (modalities, source).
        `load` is always sent: the encoder's own default is not to load (since issue 18)."""
        params = {"load": "true" if load else "false"}
        # Percent-encoded: a reference may hold '?', '#', spaces or control characters (found by
        # tests/fuzz); the encoder's `{ref:path}` route decodes it back. surrogatepass: a lone
        # surrogate from a JSON body becomes an unknown model (404), not a client crash.
        path = quote(model.encode("utf-8", "surrogatepass"), safe=":@/+")
        return ModelInfo.model_validate(self.request("GET", f"/v1/models/{path}", params=params).json())

    def embed_texts(
        self,
        model: str,
        texts: Sequence[str],
        *,
        instruction: str | None = None,
        prompt_name: str | None = None,
    ) -> np.ndarray:
        """Texts to (N, D) float32; `instruction` / `prompt_name` for models that have them
        (None: the model's default)."""
        request = EmbeddingRequest(
            model=model,
            input=list(texts),
            modality=Modality.TEXT,
            instruction=instruction,
            prompt_name=prompt_name,
        )
        response = self.request("POST", "/v1/embeddings", json=request.model_dump(mode="json"))
        body = EmbeddingResponse.model_validate(response.json())
        rows = sorted(body.data, key=lambda item: item.index)
        return np.asarray([row.embedding for row in rows], dtype=np.float32)

    def embed_images(
        self,
        model: str,
        images: Sequence[bytes],
        names: Sequence[str] | None = None,
        *,
        instruction: str | None = None,
        prompt_name: str | None = None,
        dtype: WireDtype = "float32",
    ) -> np.ndarray:
        """Bulk binary path: encoded image files in, (N, D) float32 out (`dtype="float16"` halves
        the bytes on the wire; the rows are widened back to float32)."""
        names = names or [f"{i}" for i in range(len(images))]
        files = [
            ("images", (name, data, "application/octet-stream"))
            for name, data in zip(names, images, strict=True)
        ]
        form = {"model": model, "instruction": instruction, "prompt_name": prompt_name, "dtype": dtype}
        data = {key: value for key, value in form.items() if value is not None}
        response = self.request("POST", "/v1/embeddings/images", data=data, files=files)
        rows = int(response.headers[BINARY_ROWS_HEADER])
        dim = int(response.headers[BINARY_DIM_HEADER])
        wire = WIRE_DTYPES[response.headers.get(BINARY_DTYPE_HEADER, "float32")]
        return np.frombuffer(response.content, dtype=wire).reshape(rows, dim).astype(np.float32)

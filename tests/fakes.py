"""Small deterministic stand-ins for the encoder, for tests of the layers above it."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from marsbench.evaluator.core.ports import UpstreamError
from marsbench.indexer.core.jobs import JobManager
from marsbench.indexer.core.ports import ItemRejected
from marsbench.schemas.common import Modality
from marsbench.schemas.jobs import JobStatus
from marsbench.schemas.models import ModelInfo

DIM = 8


def unit_vector(seed_text: str | bytes, dim: int = DIM) -> np.ndarray:
    data = seed_text.encode() if isinstance(seed_text, str) else seed_text
    seed = int.from_bytes(hashlib.sha256(data).digest()[:8], "little")
    vector = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


class FakeEncoder:
    """Embeds images by hashing their bytes and texts by hashing the text; PIL-decodes images
    first and rejects an undecodable one as the indexer's encoder port does (`ItemRejected` naming
    its index: what `marsbench.indexer.adapters.HttpEncoder` makes of the encoder's 422)."""

    def __init__(
        self,
        dim: int = DIM,
        weights: str = "fake-weights-1",
        modalities: Sequence[Modality] | None = None,
        preprocessing: str = "fake decode",
    ) -> None:
        self.dim = dim
        self.weights = weights
        self.preprocessing = preprocessing
        self.modalities = list(modalities or [Modality.IMAGE, Modality.TEXT])
        self.image_calls = 0
        self.text_calls: list[tuple[list[str], str | None]] = []
        self.images_embedded = 0

    def model_info(self, model: str, *, load: bool = True) -> ModelInfo:
        return ModelInfo(
            id=model,
            family="fake",
            modalities=self.modalities,
            dimension=self.dim,
            image_size=None,
            loaded=True,
            default_batch_size=8,
            weights=self.weights,
            preprocessing=self.preprocessing,
            precision="fp32",
        )

    def embed_images(
        self, model: str, images: Sequence[bytes], names: Sequence[str] | None = None
    ) -> np.ndarray:
        self.image_calls += 1
        for index, data in enumerate(images):
            try:
                with Image.open(io.BytesIO(data)) as image:
                    image.load()
            except Exception as exc:
                raise ItemRejected(f"input[{index}]: cannot decode image: {exc}", index=index) from None
        self.images_embedded += len(images)
        return np.stack([unit_vector(data, self.dim) for data in images])

    def embed_texts(
        self,
        model: str,
        texts: Sequence[str],
        *,
        instruction: str | None = None,
        prompt_name: str | None = None,
    ) -> np.ndarray:
        self.text_calls.append((list(texts), instruction))
        return np.stack(
            [unit_vector(f"{instruction}|{text}" if instruction else text, self.dim) for text in texts]
        )


class InProcessJobs:
    """The indexer's `GET /v1/jobs?collection=` answered by a JobManager in this process."""

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager

    def jobs(self, collection: str | None = None) -> list[JobStatus]:
        return self.manager.list(collection)


class IndexerDown:
    """An indexer that does not answer, as the evaluator's port reports it once the client's retries
    are spent (`marsbench.evaluator.adapters.HttpIndexingJobs`)."""

    def jobs(self, collection: str | None = None) -> list[JobStatus]:
        raise UpstreamError("GET /v1/jobs: no answer from http://indexer:8002", service="indexer")

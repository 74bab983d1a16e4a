"""Task 3, global geo-localization: find a landform's sites among ~1.4 million CTX tiles.

Query facts (PROTOCOL.md; details checked against the reference):
- text: the landform name with underscores turned into spaces (the reference's geo queries keep
  hyphens, unlike landform retrieval) through the three templates; each prompt embedding
  normalised, averaged, the mean normalised;
- image: the landform's query images embedded (each normalised), averaged, normalised;
- hybrid: text query t and image embeddings x_j; w = softmax_j((x_j . t) / temperature);
  v = normalise(sum_j w_j x_j); query = normalise(mix v + (1 - mix) t).
Arithmetic runs in float32, as the reference's torch code does; embeddings arrive L2-normalised
from the encoder and are used as given (normalising them again could move scores by an ulp).
"""

from __future__ import annotations

import numpy as np

from marsbench.datasets.geo import GeoTileDataset
from marsbench.store.base import PayloadIndex
from marsbench.tasks.base import IndexedTask
from marsbench.tasks.landform import PROMPT_TEMPLATES, normalize_rows

LOCATION_FIELD = "location"
DEFAULT_TOP_K = 20_000
DEFAULT_MIX_RATIO = 0.3
DEFAULT_TEMPERATURE = 0.1
DEFAULT_RADIUS_DEG = 0.5


def geo_phrase(landform: str) -> str:
    return landform.replace("_", " ")


def geo_prompts(landform: str) -> list[str]:
    return [template.format(geo_phrase(landform)) for template in PROMPT_TEMPLATES]


def text_query(prompt_vectors: np.ndarray) -> np.ndarray:
    """(n_templates, d) prompt embeddings to one normalised query."""
    return normalize_rows(np.asarray(prompt_vectors, dtype=np.float32).mean(axis=0))


def image_query(image_vectors: np.ndarray) -> np.ndarray:
    """(n_images, d) query-image embeddings to their normalised mean."""
    if len(image_vectors) == 0:
        raise ValueError("an image query needs at least one query image")
    return normalize_rows(np.asarray(image_vectors, dtype=np.float32).mean(axis=0))


def softmax(values: np.ndarray) -> np.ndarray:
    shifted = np.exp(values - values.max())
    return shifted / shifted.sum()


def hybrid_query(
    text: np.ndarray,
    image_vectors: np.ndarray,
    *,
    mix_ratio: float = DEFAULT_MIX_RATIO,
    temperature: float = DEFAULT_TEMPERATURE,
) -> np.ndarray:
    """Images weighted by their agreement with the text query, mixed with the text query."""
    if len(image_vectors) == 0:
        raise ValueError("a hybrid query needs at least one query image")
    images = np.asarray(image_vectors, dtype=np.float32)
    weights = softmax((images @ text).astype(np.float32) / np.float32(temperature))
    weighted = normalize_rows((weights[:, None] * images).sum(axis=0))
    return normalize_rows(np.float32(mix_ratio) * weighted + np.float32(1 - mix_ratio) * text)


GEO = IndexedTask(
    name="geolocalization",
    opener=GeoTileDataset,
    payload_indexes={
        LOCATION_FIELD: PayloadIndex.GEO,
        "source": PayloadIndex.KEYWORD,
        "name": PayloadIndex.KEYWORD,
    },
)

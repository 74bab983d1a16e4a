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

The task's facts, each written once and imported from here by the indexer, the evaluator and the
tests: what it indexes (`GEO`), its tile payload (`tile_payload`, `tile_lonlat` and the keys,
written by the reader, marsbench.datasets.geo, which cannot import its task), the run defaults
(written in the wire schema, marsbench.schemas.runs, whose request model needs them), the score
rounding it shares with landform retrieval, and its queries. Evaluating a run needs the encoder and
the store, so it lives in the evaluator (marsbench.evaluator.core.tasks.geo): the shared library
never imports a service.
"""

from __future__ import annotations

import numpy as np

from marsbench.datasets.geo import (
    LAT_KEY,
    LOCATION_FIELD,
    LON_KEY,
    NAME_FIELD,
    SOURCE_FIELD,
    UNIT_FIELD,
    GeoTileDataset,
    tile_lonlat,
    tile_payload,
)
from marsbench.schemas.runs import GEO_DEFAULT_MIX_RATIO as DEFAULT_MIX_RATIO
from marsbench.schemas.runs import GEO_DEFAULT_RADIUS_DEG as DEFAULT_RADIUS_DEG
from marsbench.schemas.runs import GEO_DEFAULT_TEMPERATURE as DEFAULT_TEMPERATURE
from marsbench.schemas.runs import GEO_DEFAULT_TOP_K as DEFAULT_TOP_K
from marsbench.store.base import PayloadIndex
from marsbench.tasks.base import IndexedTask
from marsbench.tasks.landform import PROMPT_TEMPLATES, SCORE_DECIMALS, normalize_rows

__all__ = [
    "DEFAULT_MIX_RATIO",
    "DEFAULT_RADIUS_DEG",
    "DEFAULT_TEMPERATURE",
    "DEFAULT_TOP_K",
    "GEO",
    "LAT_KEY",
    "LOCATION_FIELD",
    "LON_KEY",
    "NAME_FIELD",
    "SCORE_DECIMALS",
    "SOURCE_FIELD",
    "UNIT_FIELD",
    "geo_phrase",
    "geo_prompts",
    "hybrid_query",
    "image_query",
    "softmax",
    "text_query",
    "tile_lonlat",
    "tile_payload",
]


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
        SOURCE_FIELD: PayloadIndex.KEYWORD,
        NAME_FIELD: PayloadIndex.KEYWORD,
    },
)

"""Task 2, landform retrieval: one text query per class over every indexed image.

Facts from PROTOCOL.md: the class name becomes a phrase (underscores and hyphens to spaces),
goes into three templates; each template's embedding is normalised, the three are averaged and
the mean normalised again. The relevant set of a class is every image labelled with it.

The task's facts live here (what it indexes, its payload keys, the score rounding, its queries);
evaluating a run needs the encoder and the store, so it lives in the evaluator
(marsbench.evaluator.core.tasks.landform): the shared library never imports a service.
"""

from __future__ import annotations

import numpy as np

# The image payload (NAME_FIELD, LABEL_FIELD) is the reader's, re-exported as the task's.
from marsbench.datasets.landform import LABEL_FIELD, NAME_FIELD, LandformDataset
from marsbench.store.base import PayloadIndex
from marsbench.tasks.base import IndexedTask

# The reference rounds similarities to this many decimals before it sorts them (landform
# retrieval and geo-localization alike): scores equal at that precision are ties.
SCORE_DECIMALS = 6


PROMPT_TEMPLATES: tuple[str, ...] = (
    "a photo of {}, a type of martian terrain",
    "a satellite photo of {}.",
    "a high-resolution remote sensing image of {} on Mars.",
)


def class_phrase(class_name: str) -> str:
    return class_name.replace("_", " ").replace("-", " ")


def class_prompts(class_name: str, templates: tuple[str, ...] = PROMPT_TEMPLATES) -> list[str]:
    phrase = class_phrase(class_name)
    return [template.format(phrase) for template in templates]


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise along the last axis in float32 (the reference's torch arithmetic)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


def ensemble_query(prompt_vectors: np.ndarray) -> np.ndarray:
    """(n_templates, d) prompt embeddings, unit length from the encoder, to one normalised query.

    The rows are averaged as given, like the reference (normalising them again could move a score
    by an ulp and flip a tie at the 6-decimal rounding).
    """
    return normalize_rows(prompt_vectors.astype(np.float32).mean(axis=0))


LANDFORM = IndexedTask(
    name="landform",
    opener=LandformDataset,
    payload_indexes={LABEL_FIELD: PayloadIndex.KEYWORD, NAME_FIELD: PayloadIndex.KEYWORD},
)

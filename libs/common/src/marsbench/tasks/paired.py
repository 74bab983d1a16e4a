"""Task 1, paired image-text retrieval: every image against every caption, and back.

Each point holds both vectors of a pair (named vectors `image` and `text`), keyed by the sample
key; the caption chosen by the caption key is embedded as the text vector. The caption key
selects a data variant, so each (model, caption key) gets its own collection.

The task's facts live here; evaluating a run needs the store, so it lives in the evaluator
(marsbench.evaluator.core.tasks.paired): the shared library never imports a service.
"""

from __future__ import annotations

# The pair payload (KEY_FIELD, CAPTION_FIELD) is the reader's, re-exported as the task's.
from marsbench.datasets.paired import (
    CAPTION_FIELD,
    CAPTION_KEYS,
    DEFAULT_CAPTION_KEY,
    KEY_FIELD,
    PairedDataset,
)
from marsbench.store.base import PayloadIndex
from marsbench.tasks.base import IndexedTask

PAIRED = IndexedTask(
    name="paired",
    opener=PairedDataset,
    payload_indexes={KEY_FIELD: PayloadIndex.KEYWORD},
    text_vector="text",
    text_field=CAPTION_FIELD,
    options=("caption_key",),
)

__all__ = ["CAPTION_FIELD", "CAPTION_KEYS", "DEFAULT_CAPTION_KEY", "KEY_FIELD", "PAIRED"]

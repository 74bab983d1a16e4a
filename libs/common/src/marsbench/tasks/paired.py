"""Task 1, paired image-text retrieval: every image against every caption, and back.

Each point holds both vectors of a pair (named vectors `image` and `text`), keyed by the sample
key; the caption chosen by the caption key is embedded as the text vector. The caption key
selects a data variant, so each (model, caption key) gets its own collection.
"""

from __future__ import annotations

from marsbench.datasets.paired import DEFAULT_CAPTION_KEY, PairedDataset
from marsbench.store.base import PayloadIndex
from marsbench.tasks.base import IndexedTask

CAPTION_KEYS = ("ori_caption", "refined_caption", "qwen3_fused_caption")

PAIRED = IndexedTask(
    name="paired",
    opener=PairedDataset,
    payload_indexes={"key": PayloadIndex.KEYWORD},
    text_vector="text",
    text_field="caption",
    options=("caption_key",),
)

__all__ = ["CAPTION_KEYS", "DEFAULT_CAPTION_KEY", "PAIRED"]

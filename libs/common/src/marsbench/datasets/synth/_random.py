"""Independent random streams: one generator per (seed, stream, item), never a shared one.

Each image draws from its own generator, so an image depends only on the seed and its own
identity: changing a count, a scale or the set of tasks never changes the other images.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    LANDFORM_PLAN = 1
    LANDFORM_IMAGE = 2
    PAIRED_IMAGE = 3
    GEO_PLAN = 4
    GEO_TILE = 5
    GEO_QUERY = 6


def rng_for(seed: int, stream: Stream, *ids: int) -> np.random.Generator:
    """The generator for one item; `seed` and `ids` must be non-negative."""
    return np.random.default_rng([seed, int(stream), *ids])

"""Errors the dataset readers raise for data they cannot read at all.

A single unusable item is never an error: it goes to the `SkipLog`. These are for a dataset whose
layout or schema is wrong as a whole, so the caller can report it instead of indexing nothing.
"""

from __future__ import annotations


class DatasetError(Exception):
    """The dataset folder is missing, has no recognised layout, or its files lack required columns."""

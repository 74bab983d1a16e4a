"""Implementations of the core's ports: the encoder over HTTP (`http`) or in this process (`in_process`)."""

from marsbench.indexer.adapters.http import HttpEncoder, encoder_error
from marsbench.indexer.adapters.in_process import InProcessEncoder

__all__ = ["HttpEncoder", "InProcessEncoder", "encoder_error"]

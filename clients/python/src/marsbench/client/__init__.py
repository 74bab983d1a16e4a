"""The marsbench Python client: one class per service, sharing retries and error handling."""

from marsbench.client._base import BaseClient
from marsbench.client._encoder import EncoderClient
from marsbench.client._errors import ApiError, MarsbenchError, ServiceUnavailable
from marsbench.client._evaluator import EvaluatorClient
from marsbench.client._indexer import IndexerClient

__all__ = [
    "ApiError",
    "BaseClient",
    "EncoderClient",
    "EvaluatorClient",
    "IndexerClient",
    "MarsbenchError",
    "ServiceUnavailable",
]

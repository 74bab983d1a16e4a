"""marsbench: the Mars retrieval benchmark as encoder, indexer and evaluator services.

Shared, service-independent code lives here: wire schemas (`marsbench.schemas`), dataset readers
(`marsbench.datasets`), the vector store interface and backends (`marsbench.store`), task
definitions (`marsbench.tasks`) and settings. The services are `marsbench.encoder`,
`marsbench.indexer` and `marsbench.evaluator`; the client and CLI are `marsbench.client` and
`marsbench.cli`.
"""

__version__ = "0.1.0"

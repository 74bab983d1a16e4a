"""Picks the backend: a Qdrant server when a URL is configured, else the embedded engine."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TypedDict, Unpack

from marsbench.store.base import VectorStore
from marsbench.store.edge import EmbeddedStore

logger = logging.getLogger(__name__)


class ClusterOptions(TypedDict, total=False):
    """Options for collections created on a server or cluster (see `ServerStore`)."""

    shard_number: int | None
    replication_factor: int | None
    write_consistency_factor: int | None
    timeout: float


def open_store(
    *,
    qdrant_url: str | None,
    data_dir: Path,
    api_key: str | None = None,
    **cluster_opts: Unpack[ClusterOptions],
) -> VectorStore:
    """`ServerStore` for `qdrant_url`, else `EmbeddedStore` under ``data_dir / "qdrant"``.

    The cluster options reach `ServerStore` (None: the server's own default). The embedded engine
    keeps one local shard per collection, so it ignores them; a value other than 1 is logged.
    """
    if qdrant_url:
        # Imported here: qdrant-client takes over a second to import, which embedded runs skip.
        from marsbench.store.server import ServerStore

        return ServerStore(qdrant_url, api_key=api_key, **cluster_opts)
    # 1 is what the embedded engine does anyway (one shard, one copy, a write applied once).
    ignored = sorted(k for k, v in cluster_opts.items() if v not in (None, 1) and k != "timeout")
    if ignored:
        # One embedded shard per collection: there is nothing to shard or replicate.
        logger.warning("no QDRANT_URL: the embedded store ignores %s", ", ".join(ignored))
    return EmbeddedStore(Path(data_dir) / "qdrant")

"""Downloads the published MarsRetrieval datasets (`marsbench data download`, docs/data.md).

`hub`: the Hugging Face dataset repos at their pinned revisions, copied into a dataset folder.
`tsv`: the paired set's `mars_vl_pairs.tsv`, built from the hub rows as the reference's hf2tsv does.
`pairs`: the paired set's images, from the TSV's URLs into WebDataset shards, resumably.
"""

from marsbench.datasets.download.hub import (
    HUB_DATASETS,
    UNPINNED_WARNING,
    HubDataset,
    HubDownloadResult,
    download_hub_dataset,
    fetch_snapshot,
)
from marsbench.datasets.download.pairs import (
    DownloadFailure,
    DownloadProgress,
    PairsDownloadOptions,
    PairsDownloadResult,
    download_pairs,
)
from marsbench.datasets.download.tsv import PairRow, read_tsv, rows_from_snapshot, write_tsv

__all__ = [
    "HUB_DATASETS",
    "UNPINNED_WARNING",
    "DownloadFailure",
    "DownloadProgress",
    "HubDataset",
    "HubDownloadResult",
    "PairRow",
    "PairsDownloadOptions",
    "PairsDownloadResult",
    "download_hub_dataset",
    "download_pairs",
    "fetch_snapshot",
    "read_tsv",
    "rows_from_snapshot",
    "write_tsv",
]

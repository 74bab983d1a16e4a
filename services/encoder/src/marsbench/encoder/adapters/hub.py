"""Where a model's files come from: a local folder, or a hub repository at a pinned revision.

Every family resolves its `source` here, so a hub model and the same files in a local folder load
through one path (which is how the offline tests exercise the hub models' loading code).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from marsbench.encoder.adapters.base import RuntimeOptions
from marsbench.encoder.errors import ModelLoadFailed, ModelUnusable
from marsbench.encoder.registry import WEIGHT_SUFFIXES, ModelSpec

log = logging.getLogger(__name__)

# Formats other runtimes use; never needed by torch and often as large as the weights themselves.
_FOREIGN_WEIGHTS = ["*.msgpack", "*.h5", "flax_*", "mlx_*", "*.onnx", "*.ckpt", "*.gguf", "tf_*"]


def has_weights(folder: Path) -> bool:
    return folder.is_dir() and any(p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir())


def check_local_folder(spec: ModelSpec) -> None:
    """A local model folder that is missing or holds no weights never loads: a permanent error."""
    local = spec.local_folder()
    if local is None:
        return
    if not local.is_dir():
        raise ModelUnusable(f"model {spec.name!r}: model folder {local} does not exist")
    if not has_weights(local):
        raise ModelUnusable(
            f"model folder {local} holds no weights file ({', '.join(WEIGHT_SUFFIXES)}); "
            "point the registry entry at the folder a hub snapshot or save_pretrained wrote"
        )


def model_folder(spec: ModelSpec, options: RuntimeOptions, pattern_sets: Sequence[Sequence[str]]) -> Path:
    """The folder holding the model's files.

    `pattern_sets` are tried in order for hub repositories (e.g. safetensors files first, then
    the .bin alternative), so that only one copy of the weights is downloaded.
    """
    local = spec.local_folder()
    if local is not None:
        check_local_folder(spec)
        return local
    repo = spec.hub_repo()
    if repo is None:
        raise ModelLoadFailed(
            f"model {spec.name!r}: source {spec.source!r} is neither 'hf-hub:<repo>' nor 'local-dir:<folder>'"
        )
    return hub_snapshot(repo, spec.revision, options, pattern_sets, what=f"model {spec.name!r}")


def hub_snapshot(
    repo: str,
    revision: str | None,
    options: RuntimeOptions,
    pattern_sets: Sequence[Sequence[str]],
    *,
    what: str,
    require_weights: bool = True,
) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if revision is None:
        log.warning("%s: hub repository %s has no pinned revision; using its current main branch", what, repo)
    folder: Path | None = None
    for patterns in pattern_sets:
        try:
            folder = Path(
                snapshot_download(
                    repo,
                    revision=revision,
                    cache_dir=options.cache_dir,
                    allow_patterns=list(patterns),
                    ignore_patterns=_FOREIGN_WEIGHTS,
                )
            )
        except LocalEntryNotFoundError as exc:
            raise ModelLoadFailed(
                f"{what}: {repo}@{revision or 'main'} is not in the local cache and the hub cannot be "
                f"reached (HF_HUB_OFFLINE or no network); download it where there is network, e.g. "
                f"`huggingface-cli download {repo}{f' --revision {revision}' if revision else ''}`, "
                "and share the cache (MARSBENCH_ENCODER_CACHE_DIR / HF_HOME)"
            ) from exc
        except (RepositoryNotFoundError, RevisionNotFoundError) as exc:  # permanent: 4xx, not retried
            raise ModelUnusable(
                f"{what}: {repo}@{revision or 'main'} does not exist on the hub: {exc}"
            ) from exc
        except (HfHubHTTPError, OSError, ValueError) as exc:
            raise ModelLoadFailed(f"{what}: cannot fetch {repo}@{revision or 'main'}: {exc}") from exc
        if has_weights(folder) or not require_weights:
            return folder
    raise ModelUnusable(f"{what}: {repo}@{revision or 'main'} holds no weights file ({folder})")


def converted_dir(options: RuntimeOptions) -> Path:
    """Where checkpoints rewritten into another layout are kept, beside the hub cache."""
    from huggingface_hub import constants

    return Path(options.cache_dir or constants.HF_HUB_CACHE) / "marsbench-converted"

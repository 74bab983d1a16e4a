"""The CLI's optional encoder extra (`marsbench-cli[encoder]`: the encoder and training packages, torch).

Only the commands that run a model here import them, through the functions below, so `marsbench
--help`, `report`, `jobs`, `collections` and `benchmark` or `run` against running services work in
an install without the extra; a command that needs it says which package to install instead of
failing with a traceback. The encoder and the trainer are composed only through their app factories
and settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from marsbench.cli.errors import CommandError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from marsbench.encoder.settings import EncoderSettings
    from marsbench.training.settings import TrainerSettings

ENCODER_EXTRA = "marsbench-cli[encoder]"

# The packages the extra brings. Python names the first missing package of an import in its
# ModuleNotFoundError; a missing submodule of one that is there is a broken install, not this.
_EXTRA_PACKAGES = frozenset(
    {"marsbench.encoder", "marsbench.training", "torch", "torchvision", "open_clip", "transformers", "peft"}
)


class ExtraMissing(CommandError):
    """A command needs the encoder extra, which is not installed; the message says what to install."""


@contextmanager
def encoder_extra(what: str, *, needs: str = "the encoder") -> Iterator[None]:
    """Around imports of the extra's packages: their absence becomes `ExtraMissing`, saying that
    `what` (e.g. "`marsbench train`") needs `needs` and which extra to install."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name not in _EXTRA_PACKAGES:
            raise
        raise ExtraMissing(
            f"{what} needs {needs}, which is not installed here (no module {exc.name!r}): "
            f"install {ENCODER_EXTRA}"
        ) from exc


def encoder_settings(what: str) -> EncoderSettings:
    """The encoder's settings from the environment (MARSBENCH_ENCODER_*, MARSBENCH_HOST)."""
    with encoder_extra(what):
        from marsbench.encoder.settings import EncoderSettings
    return EncoderSettings()


def create_encoder_app(settings: EncoderSettings, what: str) -> FastAPI:
    """The encoder service's app, from its public factory."""
    with encoder_extra(what):
        from marsbench.encoder.app import create_app
    return create_app(settings)


_TRAINING = "the training package"


def trainer_settings(what: str) -> TrainerSettings:
    """The trainer app's settings from the environment (MARSBENCH_TRAIN_*, the shared access settings)."""
    with encoder_extra(what, needs=_TRAINING):
        from marsbench.training.settings import TrainerSettings
    return TrainerSettings()


def create_trainer_app(settings: TrainerSettings, what: str) -> FastAPI:
    """The trainer app (POST /v1/train), from its public factory; it loads no torch itself."""
    with encoder_extra(what, needs=_TRAINING):
        from marsbench.training.app import create_app
    return create_app(settings)

""".env.example against the services' own settings classes.

docker-compose.yml passes the services' tunables through from .env (`KEY:` with no value: unset
when .env lacks it, so the service's default applies). .env.example must then (1) parse, as a
whole, through the settings classes that read it, (2) give each tunable it sets the service's
own default, so "every value below is the default" holds, and (3) leave unset, commented out,
only the settings whose default is "none" (an empty value would not parse as a number).
"""

from __future__ import annotations

import pytest
from pydantic_settings import BaseSettings

from marsbench.encoder.settings import EncoderSettings
from marsbench.evaluator.settings import EvaluatorSettings
from marsbench.indexer.settings import IndexerSettings
from marsbench.training.settings import TrainerSettings
from tests.deploy.conftest import EnvEntry

SETTINGS: tuple[type[BaseSettings], ...] = (
    EncoderSettings,
    IndexerSettings,
    EvaluatorSettings,
    TrainerSettings,
)
# Read by compose or by other programs in the containers, not by a marsbench settings class.
NOT_SETTINGS = {"HF_TOKEN"}


def env_names(cls: type[BaseSettings]) -> dict[str, str]:
    """Environment variable -> field name, as pydantic-settings reads them for `cls`."""
    prefix = cls.model_config.get("env_prefix", "")
    names = {}
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None) or ([alias] if isinstance(alias, str) else None)
        for name in choices or [f"{prefix}{field_name}".upper()]:
            names[str(name)] = field_name
    return names


def passed_through(bare_config: dict[str, object]) -> dict[str, set[str]]:
    """Variable -> the services that receive it straight from .env."""
    found: dict[str, set[str]] = {}
    for name, service in bare_config["services"].items():  # type: ignore[union-attr]
        for key, value in (service.get("environment") or {}).items():
            if value is None:
                found.setdefault(key, set()).add(name)
    return found


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for cls in SETTINGS:
        for name in env_names(cls):
            monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_env_example_parses_through_every_service_settings(
    clean_env: pytest.MonkeyPatch, env_example: dict[str, EnvEntry]
) -> None:
    for entry in env_example.values():
        if entry.value is not None:
            clean_env.setenv(entry.name, entry.value)
    for cls in SETTINGS:
        cls()  # raises on any value the service would refuse at start-up


def test_passed_through_settings_default_to_the_services_defaults(
    clean_env: pytest.MonkeyPatch, env_example: dict[str, EnvEntry], bare_config: dict[str, object]
) -> None:
    checked = set()
    for variable in set(passed_through(bare_config)) - NOT_SETTINGS:
        readers = [cls for cls in SETTINGS if variable in env_names(cls)]
        assert readers, f"{variable} is passed to the services, but no settings class reads it"
        entry = env_example[variable]
        for cls in readers:
            field = env_names(cls)[variable]
            default = getattr(cls(), field)
            if entry.value is None:
                assert default in (None, []), f"{variable} is left unset, but its default is {default!r}"
                continue
            with clean_env.context() as patch:
                patch.setenv(variable, entry.value)
                value = getattr(cls(), field)
            assert value == default, f".env.example: {variable}={entry.value} is not the default {default!r}"
            checked.add(variable)
    assert checked, "no passed-through setting checked"


def test_cluster_options_are_store_settings(env_example: dict[str, EnvEntry]) -> None:
    for variable in ("QDRANT_SHARD_NUMBER", "QDRANT_REPLICATION_FACTOR", "QDRANT_WRITE_CONSISTENCY_FACTOR"):
        assert variable in env_names(IndexerSettings) and variable in env_names(EvaluatorSettings)
        assert env_example[variable].value == "1"

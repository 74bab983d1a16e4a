"""The encoder parity harness (benchmarks/parity/encoder_parity.py) covers every registered model:
its case modules import, name real models, environments, sources and reference scripts. The
comparison itself runs outside the test command (it builds reference environments; docs/parity.md)."""

from __future__ import annotations

from benchmarks.parity.encoder_parity import REFERENCE_SCRIPTS, all_envs, all_sources, discover
from marsbench.encoder.registry import builtin_specs

# The project's own tiny model has no reference counterpart.
NOT_IN_THE_REFERENCE = {"marsbench-tiny"}


def test_every_family_module_imports() -> None:
    families = discover()
    assert families, "no case modules under benchmarks/parity/encoders/families"
    assert [f.error for f in families if f.error] == []


def test_every_benchmark_model_has_a_case_against_the_reference() -> None:
    covered = {model for family in discover() for case in family.cases for model in case.models}
    registered = set(builtin_specs())
    assert covered <= registered, f"cases name unknown models: {sorted(covered - registered)}"
    assert registered - NOT_IN_THE_REFERENCE - covered == set()
    assert len(registered - NOT_IN_THE_REFERENCE) == 16


def test_every_case_names_a_declared_environment_source_and_script() -> None:
    families = discover()
    envs, sources = all_envs(families), all_sources(families)
    names = [case.name for family in families for case in family.cases]
    assert len(names) == len(set(names)), "case names repeat"
    for family in families:
        for case in family.cases:
            assert case.env in envs, (case.name, case.env)
            assert set(case.third_party) <= set(sources), (case.name, case.third_party)
            assert (REFERENCE_SCRIPTS / case.reference).is_file(), (case.name, case.reference)
            assert set(case.modalities) <= {"image", "text"} and case.modalities

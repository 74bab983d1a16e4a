"""Which embedding modalities a task (and, for geo-localization, a query mode) needs from a model.

Image-only models (AIMv2-448, DINOv3) take part in image queries only: the evaluator and the
indexer ask this before any work, so a run they cannot serve is refused with the reason, not
after minutes of indexing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from marsbench.schemas.common import Modality
from marsbench.schemas.jobs import TaskName
from marsbench.schemas.runs import QueryMode

_QUERY_NEEDS = {
    QueryMode.TEXT: frozenset({Modality.TEXT}),
    QueryMode.IMAGE: frozenset({Modality.IMAGE}),
    QueryMode.HYBRID: frozenset({Modality.IMAGE, Modality.TEXT}),
}


def indexing_needs(task: TaskName) -> frozenset[Modality]:
    """Modalities the indexer embeds: images always; paired data also its captions."""
    return (
        frozenset({Modality.IMAGE, Modality.TEXT}) if task is TaskName.PAIRED else frozenset({Modality.IMAGE})
    )


def query_needs(task: TaskName, query_mode: QueryMode | None = None) -> frozenset[Modality]:
    """Modalities the evaluator embeds for a run's queries."""
    if task is TaskName.LANDFORM:
        return frozenset({Modality.TEXT})  # one text query per class
    if task is TaskName.PAIRED:
        return frozenset({Modality.IMAGE, Modality.TEXT})
    return _QUERY_NEEDS[query_mode or QueryMode.TEXT]


def missing_modalities(needed: Iterable[Modality], offered: Iterable[Modality]) -> list[Modality]:
    return sorted(set(needed) - set(offered))


def servable_modes(offered: Iterable[Modality], modes: Sequence[QueryMode]) -> list[QueryMode]:
    """The geo-localization query modes, among `modes`, that a model with `offered` can serve."""
    have = set(offered)
    return [mode for mode in modes if _QUERY_NEEDS[mode] <= have]


def refusal(
    model: str, task: TaskName, missing: Sequence[Modality], query_mode: QueryMode | None = None
) -> str:
    """The message that says why a model cannot take part, and what it can do instead."""
    what = f"{task.value} {query_mode.value} queries" if query_mode else f"the {task.value} task"
    hint = (
        " (image-only models take part in geo-localization image queries only)"
        if Modality.TEXT in missing
        else ""
    )
    return f"model {model!r} does not embed {' or '.join(m.value for m in missing)}, which {what} needs{hint}"

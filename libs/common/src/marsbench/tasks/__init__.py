"""Task definitions: what each task indexes, how its collections are named, which queries it builds.

Pure definitions shared by the indexer (what to write) and the evaluator (what to ask); neither
service knows another task's details. `INDEXABLE` maps a task name to its definition.
"""

from __future__ import annotations

from marsbench.tasks.base import IndexedTask
from marsbench.tasks.geo import GEO
from marsbench.tasks.landform import LANDFORM
from marsbench.tasks.paired import PAIRED

INDEXABLE: dict[str, IndexedTask] = {task.name: task for task in (LANDFORM, GEO, PAIRED)}

__all__ = ["INDEXABLE", "IndexedTask"]

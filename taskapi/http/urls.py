"""URL converters: task ids that the database can hold, or a plain 404."""

from __future__ import annotations

from typing import Any

from werkzeug.routing import IntegerConverter

from taskapi.domain.models import MAX_ID
from taskapi.errors import APIError


# workaround: Werkzeug int(max=...) answers 405 for a too-large id (pinned by tests/test_library_defects.py::test_werkzeug_int_max_gives_405_for_a_large_id)
class TaskIdConverter(IntegerConverter):
    """`<task_id:...>`: 1-10 ASCII digits (`\\d` also matches other scripts' digits, which int()
    reads). Larger values are answered 404 by `reject_large_ids` (a converter that raises would
    make Werkzeug answer 405 for the other methods)."""

    regex = r"[0-9]{1,10}"
    documented_max = MAX_ID


def reject_large_ids(endpoint: str | None, values: dict[str, Any] | None) -> None:
    task_id = (values or {}).get("task_id")
    if isinstance(task_id, int) and task_id > MAX_ID:
        raise APIError(404, f"Task with ID {task_id} not found")

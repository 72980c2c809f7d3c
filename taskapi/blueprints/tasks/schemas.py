"""The task schema family: Create, Replace (PUT), Patch, the list's query, and what the API
returns. These models are the ones that parse requests and produce responses, not only docs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    MISSING,
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
)
from typing_extensions import TypeAliasType

from taskapi.domain.pagination import CURSOR_PATTERN, Cursor
from taskapi.domain.tasks import TaskRow
from taskapi.http.validation import STORABLE, Rejected, Text, stripped_length

# 1 to 150 characters once stripped of the whitespace around them (the contract's "trimmed,
# 1-150 chars"), however much surrounds them; stored stripped.
Title = Annotated[
    str, StringConstraints(pattern=stripped_length(1, 150)), STORABLE, AfterValidator(str.strip)
]
Description = Annotated[Text, StringConstraints(max_length=10_000)]
# One named schema (`TaskStatus`) wherever a task's status is read or written.
TaskStatus = TypeAliasType("TaskStatus", Literal["pending", "completed"])

_INPUT = ConfigDict(strict=True, extra="ignore")


class TaskCreate(BaseModel):
    """A new task. Read-only and unknown fields are ignored."""

    model_config = _INPUT

    title: Title = Field(examples=["Write the report"])
    description: Description | None = Field(default=None, examples=["Quarterly numbers"])
    status: TaskStatus = "pending"
    due_date: dt.date | None = Field(default=None, examples=["2026-12-31"])


class TaskReplace(BaseModel):
    """A full replacement (PUT): `title` and `status` required, the rest reset when absent."""

    model_config = _INPUT

    title: Title
    status: TaskStatus
    description: Description | None = None
    due_date: dt.date | None = None


_PATCHED = ("title", "description", "status", "due_date")


class TaskPatch(BaseModel):
    """A partial update (PATCH): at least one of the writable fields; `title` and `status`
    may be left out but not cleared (null)."""

    model_config = ConfigDict(
        strict=True,
        extra="ignore",
        # "not all of them absent": at least one given (unknown fields alone change nothing,
        # answered 400 `empty_patch`)
        # workaround: openapi-python-client drops a model with an anyOf of required (pinned by tests/test_library_defects.py::test_openapi_python_client_gives_up_on_a_model_with_an_any_of_of_required)
        json_schema_extra={
            "minProperties": 1,
            "not": {"properties": {name: {"not": {}} for name in _PATCHED}},
        },
    )

    title: Title | MISSING = MISSING
    description: Description | MISSING | None = MISSING
    status: TaskStatus | MISSING = MISSING
    due_date: dt.date | MISSING | None = MISSING

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


# `datetime.isoformat()`, as the API has always written times: pydantic's own JSON writes `Z`
# for UTC where seed clients and cached answers have `+00:00`.
Timestamp = Annotated[
    dt.datetime,
    PlainSerializer(dt.datetime.isoformat, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]


class TaskOut(BaseModel):
    """A task as the API shows it: these fields, in this order."""

    id: int
    title: str
    description: str | None
    status: TaskStatus
    due_date: dt.date | None
    created_at: Timestamp
    updated_at: Timestamp
    owner_id: int
    version: int = Field(description="Moves on by one with every change (the ETag's validator).")


# Built once, at import. A row goes in as a dict of its columns: validating the Row itself
# (from_attributes) reads each column through Row.__getattr__, 1.7 times the CPU per page here
# (bench/serialize_tasks.py).
_validate_task = TaskOut.__pydantic_validator__.validate_python
_task_to_json = TaskOut.__pydantic_serializer__.to_json
_TASKS = TypeAdapter(list[TaskOut])
_validate_tasks = _TASKS.validator.validate_python
_tasks_to_json = _TASKS.serializer.to_json


def task_json(task: TaskRow) -> bytes:
    """A task row as TaskOut's JSON."""
    return _task_to_json(_validate_task(dict(zip(task._fields, task, strict=True))))


def tasks_json(tasks: Sequence[TaskRow]) -> bytes:
    """The rows of one result as the JSON array of their TaskOut."""
    # one result's rows share their columns (Row._fields costs over a µs per call)
    columns = tasks[0]._fields if tasks else ()
    return _tasks_to_json(_validate_tasks([dict(zip(columns, t, strict=True)) for t in tasks]))


class TaskEnvelope(BaseModel):
    """The task."""

    status: Literal["success"] = "success"
    data: TaskOut


class PageMeta(BaseModel):
    count: int
    next_cursor: str | None


class TaskListEnvelope(BaseModel):
    """One page of tasks, newest first; `meta.next_cursor` continues it."""

    status: Literal["success"] = "success"
    data: list[TaskOut]
    meta: PageMeta


MAX_LIMIT_DIGITS = 6  # leading zeros allowed, within reason


def _ascii_digits(value: object) -> object:
    """Only 1 to 6 ASCII digits make a limit of the query string: pydantic's int would also take
    `+5`, ` 5`, `5_0` and `1.0`. The length bound also keeps int() off huge input."""
    if isinstance(value, str) and not (
        value.isascii() and value.isdigit() and len(value) <= MAX_LIMIT_DIGITS
    ):
        raise ValueError("not an integer of at most 6 digits")
    return value


def _cursor(token: object) -> Cursor | None:
    """A token of `Cursor.encode`; an empty `cursor=` is no cursor, as if absent."""
    if token is None or isinstance(token, Cursor):
        return token
    if not isinstance(token, str):
        raise ValueError("not a cursor")
    return Cursor.decode(token) if token else None


class TaskListQuery(BaseModel):
    """The list's query string; each parameter declares the contract's answer to a bad value."""

    status: Annotated[
        TaskStatus | None, Rejected("Invalid status filter. Use 'pending' or 'completed'.")
    ] = Field(default=None, description="Only tasks with this status.")
    limit: Annotated[
        int,
        BeforeValidator(_ascii_digits),
        Rejected("limit must be an integer from 1 to 100.", "invalid_limit"),
    ] = Field(default=100, ge=1, le=100, description="Page size, 1-100.")
    cursor: Annotated[
        Cursor | None,
        PlainValidator(
            _cursor,
            json_schema_input_type=Annotated[str, StringConstraints(pattern=CURSOR_PATTERN)],
        ),
        Rejected("Invalid cursor.", "invalid_cursor"),
    ] = Field(default=None, description="`meta.next_cursor` of the last page.")

"""Task reads and writes, the one path by which tasks change: one statement each, ownership and
the write's precondition in its WHERE clause (`_visible_to`, `_meets`), the change recorded in
the write's unit of work (which hands it to the effects once it has committed)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    case,
    delete,
    false,
    func,
    insert,
    literal,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from taskapi.domain.effects import Change, Kind
from taskapi.domain.models import Task
from taskapi.domain.pagination import Cursor
from taskapi.domain.viewer import Viewer
from taskapi.domain.work import UnitOfWork
from taskapi.errors import APIError
from taskapi.infra.db import is_foreign_key_violation
from taskapi.infra.logs import current_request_id

# Core statements on the table: rows come back without the ORM's per-object bookkeeping.
# SQLAlchemy cannot type a RETURNING of the whole table (a variable typed TaskRow says it).
TASKS = Task.__table__
TaskRow = Row[Any]
NEWEST_FIRST = (TASKS.c.created_at.desc(), TASKS.c.id.desc())
# Built once; the values come with each execution (no statement to build and key per request).
INSERT_RETURNING = insert(TASKS).returning(TASKS)
PROCESSED_MARK = " [Processed]"
_PROCESSED_DESCRIPTION = case(
    (TASKS.c.description.endswith(PROCESSED_MARK, autoescape=True), TASKS.c.description),
    else_=func.coalesce(TASKS.c.description, literal("")) + literal(PROCESSED_MARK),
)


@dataclasses.dataclass(frozen=True, slots=True)
class Precondition:
    """What a write requires of the task's current version (RFC 9110 If-Match): one of
    `versions`, or any version when `versions` is None (`If-Match: *`). `missing`: the caller
    sent no precondition where one is required (428), so no version can meet it."""

    versions: frozenset[int] | None
    missing: bool = False


ANY_VERSION = Precondition(None)
REQUIRED_BUT_MISSING = Precondition(frozenset(), missing=True)


def etag(task_id: int, version: int) -> str:
    """The strong entity tag of a task at a version (RFC 9110 §8.8.3): `"<id>.<version>"`."""
    return f'"{task_id}.{version}"'


def _meets(precondition: Precondition | None) -> ColumnElement[bool]:
    """The precondition as a condition of the statement that writes (so it holds at the write)."""
    if precondition is None or precondition.versions is None:
        return true()
    if not precondition.versions:
        return false()
    return TASKS.c.version.in_(sorted(precondition.versions))


def _changed(unit: UnitOfWork, kind: Kind, task_id: int, owner_id: int, requested_by: int) -> None:
    """Record a write in its unit, after its statement."""
    unit.changed(Change(kind, task_id, owner_id, requested_by, current_request_id()))


def _visible_to(viewer: Viewer) -> ColumnElement[bool]:
    """The admin bypass, in one place."""
    return true() if viewer.is_admin else TASKS.c.owner_id == viewer.id


async def _missing_or_forbidden(
    connection: AsyncConnection,
    task_id: int,
    viewer: Viewer | None = None,
    precondition: Precondition | None = None,
) -> APIError:
    """After a scoped statement found nothing: 404 when the task does not exist, 403 when it is
    not the viewer's; else its precondition failed: 428 when missing, 412 (with the task's
    current ETag) when the version has moved on. Preconditions come last (RFC 9110 §13.2.1:
    they are evaluated only where the unconditional request would have succeeded)."""
    row = (
        await connection.execute(
            select(TASKS.c.owner_id, TASKS.c.version).where(TASKS.c.id == task_id)
        )
    ).first()
    if row is None:
        return APIError(404, f"Task with ID {task_id} not found")
    visible = viewer is not None and (viewer.is_admin or row.owner_id == viewer.id)
    if not visible or precondition is None:
        return APIError(403, "You are not allowed to access this task.")
    current = {"ETag": etag(task_id, row.version)}
    if precondition.missing:
        return APIError(
            428,
            "This write must be conditional: send If-Match with the task's ETag.",
            code="precondition_required",
            headers=current,
        )
    return APIError(
        412,
        "The task has changed since that ETag: read it again, then retry with its new ETag.",
        code="precondition_failed",
        headers=current,
    )


async def list_tasks(
    connection: AsyncConnection,
    viewer: Viewer,
    *,
    status: str | None,
    limit: int,
    after: Cursor | None,
) -> tuple[Sequence[TaskRow], Cursor | None]:
    """One page of the viewer's tasks, newest first, and the cursor of the next page."""
    query = select(TASKS).where(_visible_to(viewer))
    if status is not None:
        query = query.where(TASKS.c.status == status)
    if after is not None:
        query = query.where(
            tuple_(TASKS.c.created_at, TASKS.c.id) < tuple_(after.created_at, after.id)
        )
    rows = (await connection.execute(query.order_by(*NEWEST_FIRST).limit(limit + 1))).all()
    if len(rows) <= limit:
        return rows, None
    page = rows[:limit]
    return page, Cursor(created_at=page[-1].created_at, id=page[-1].id)


async def get_task_for(connection: AsyncConnection, viewer: Viewer, task_id: int) -> TaskRow:
    query = select(TASKS).where(TASKS.c.id == task_id, _visible_to(viewer))
    task = (await connection.execute(query)).first()
    if task is None:
        raise await _missing_or_forbidden(connection, task_id)
    return task


async def create_task(unit: UnitOfWork, viewer: Viewer, fields: dict[str, Any]) -> TaskRow:
    """Insert the caller's task; 401 when the caller's account is gone (deleted while this
    process still reused its role: the owner's foreign key refuses the row)."""
    try:
        task: TaskRow | None = (
            await unit.connection.execute(INSERT_RETURNING, {**fields, "owner_id": viewer.id})
        ).first()
    except IntegrityError as error:
        if not is_foreign_key_violation(error):  # owner_id is the table's one foreign key
            raise
        raise APIError(401, "The token's user no longer exists.", code="token_invalid") from None
    if task is None:
        raise RuntimeError("INSERT ... RETURNING returned no row")
    _changed(unit, "created", task.id, task.owner_id, viewer.id)
    return task


async def update_task(
    unit: UnitOfWork,
    viewer: Viewer,
    task_id: int,
    changes: dict[str, Any],
    precondition: Precondition | None = None,
) -> TaskRow:
    """Apply `changes` (PUT passes every writable field, PATCH only those sent), if the task's
    version meets the precondition; the version moves on by one."""
    statement = (
        update(TASKS)
        .where(TASKS.c.id == task_id, _visible_to(viewer), _meets(precondition))
        .values(**changes)
        .returning(TASKS)
    )
    task: TaskRow | None = (await unit.connection.execute(statement)).first()
    if task is None:
        raise await _missing_or_forbidden(unit.connection, task_id, viewer, precondition)
    _changed(unit, "updated", task.id, task.owner_id, viewer.id)
    return task


async def delete_task(
    unit: UnitOfWork, viewer: Viewer, task_id: int, precondition: Precondition | None = None
) -> None:
    statement = (
        delete(TASKS)
        .where(TASKS.c.id == task_id, _visible_to(viewer), _meets(precondition))
        .returning(TASKS.c.owner_id)
    )
    owner_id = await unit.connection.scalar(statement)
    if owner_id is None:
        raise await _missing_or_forbidden(unit.connection, task_id, viewer, precondition)
    _changed(unit, "deleted", task_id, owner_id, viewer.id)


async def delete_tasks_of(unit: UnitOfWork, owner_id: int, requested_by: int) -> list[int]:
    """Delete every task of an owner (deleting the account, in its transaction); their ids."""
    deleted = await unit.connection.scalars(
        delete(TASKS).where(TASKS.c.owner_id == owner_id).returning(TASKS.c.id)
    )
    task_ids = list(deleted)
    for task_id in task_ids:
        _changed(unit, "deleted", task_id, owner_id, requested_by)
    return task_ids


async def process_task(unit: UnitOfWork, task_id: int, requested_by: int) -> str | None:
    """Mark the description processed (never twice) and complete the task, in one statement;
    the new description, or None when the task is gone."""
    statement = (
        update(TASKS)
        .where(TASKS.c.id == task_id)
        .values(description=_PROCESSED_DESCRIPTION, status="completed")
        .returning(TASKS.c.description, TASKS.c.owner_id)
    )
    row = (await unit.connection.execute(statement)).first()
    if row is None:
        return None
    _changed(unit, "processed", task_id, row.owner_id, requested_by)
    description: str = row.description
    return description

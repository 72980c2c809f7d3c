"""Task reads and writes with ownership in the WHERE clause.

A `user` sees and changes only their own tasks, an `admin` every task (`_visible_to`). When a
statement scoped that way finds nothing, one more query tells 404 (no such task) from 403
(someone else's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import ColumnElement, delete, insert, select, true, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth.guard import Viewer
from taskapi.errors import APIError
from taskapi.models import Task
from taskapi.tasks.pagination import Cursor

NEWEST_FIRST = (Task.created_at.desc(), Task.id.desc())


class Invalidator(Protocol):
    """What a write tells the response cache after it commits."""

    async def invalidate(self, task_id: int, owner_id: int) -> None: ...


async def _invalidate(cache: Invalidator | None, task_id: int, owner_id: int) -> None:
    if cache is not None:
        await cache.invalidate(task_id, owner_id)


def _visible_to(viewer: Viewer) -> ColumnElement[bool]:
    """The admin bypass, in one place."""
    return true() if viewer.is_admin else Task.owner_id == viewer.id


async def _missing_or_forbidden(session: AsyncSession, task_id: int) -> APIError:
    exists = await session.scalar(select(Task.id).where(Task.id == task_id))
    if exists is None:
        return APIError(404, f"Task with ID {task_id} not found")
    return APIError(403, "You are not allowed to access this task.")


async def list_tasks(
    session: AsyncSession,
    viewer: Viewer,
    *,
    status: str | None,
    limit: int,
    after: Cursor | None,
) -> tuple[Sequence[Task], Cursor | None]:
    """One page of the viewer's tasks, newest first, and the cursor of the next page."""
    query = select(Task).where(_visible_to(viewer))
    if status is not None:
        query = query.where(Task.status == status)
    if after is not None:
        query = query.where(tuple_(Task.created_at, Task.id) < tuple_(after.created_at, after.id))
    rows = (await session.scalars(query.order_by(*NEWEST_FIRST).limit(limit + 1))).all()
    if len(rows) <= limit:
        return rows, None
    page = rows[:limit]
    return page, Cursor(created_at=page[-1].created_at, id=page[-1].id)


async def get_task_for(session: AsyncSession, viewer: Viewer, task_id: int) -> Task:
    task = await session.scalar(select(Task).where(Task.id == task_id, _visible_to(viewer)))
    if task is None:
        raise await _missing_or_forbidden(session, task_id)
    return task


async def create_task(
    session: AsyncSession, viewer: Viewer, fields: dict[str, Any], *, cache: Invalidator | None
) -> Task:
    task = await session.scalar(insert(Task).values(**fields, owner_id=viewer.id).returning(Task))
    if task is None:
        raise RuntimeError("INSERT ... RETURNING returned no row")
    await session.commit()
    await _invalidate(cache, task.id, task.owner_id)
    return task


async def update_task(
    session: AsyncSession,
    viewer: Viewer,
    task_id: int,
    changes: dict[str, Any],
    *,
    cache: Invalidator | None,
) -> Task:
    """Apply `changes` (PUT passes every writable field, PATCH only those sent)."""
    statement = (
        update(Task)
        .where(Task.id == task_id, _visible_to(viewer))
        .values(**changes)
        .returning(Task)
        .execution_options(synchronize_session=False)
    )
    task = await session.scalar(statement)
    if task is None:
        error = await _missing_or_forbidden(session, task_id)
        await session.rollback()
        raise error
    await session.commit()
    await _invalidate(cache, task.id, task.owner_id)
    return task


async def delete_task(
    session: AsyncSession, viewer: Viewer, task_id: int, *, cache: Invalidator | None
) -> None:
    owner_id = await session.scalar(
        delete(Task).where(Task.id == task_id, _visible_to(viewer)).returning(Task.owner_id)
    )
    if owner_id is None:
        error = await _missing_or_forbidden(session, task_id)
        await session.rollback()
        raise error
    await session.commit()
    await _invalidate(cache, task_id, owner_id)

"""The outbox: the jobs a write calls for, written in the write's own atomic unit, so that a
committed write's jobs are never lost; the relay (`taskapi.domain.relay`) moves them into the
queue under their outbox id, which is the job's id. Also the cache versions a committed write
could not bump (its store was unreachable), for the relay to bump once it can."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import ColumnElement, delete, func, insert, literal, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from taskapi.domain.models import OutboxEntry, Task
from taskapi.domain.ports import JobName
from taskapi.infra.stores import JobRequest

OUTBOX = OutboxEntry.__table__
TASKS = Task.__table__
# not a job: the cache versions a write could not bump, for the relay to bump
CACHE_VERSIONS = "cache_versions"
_TASK_COLUMNS = ", ".join(column.name for column in TASKS.c)
# PostgreSQL: the task and its e-mail's intent in one statement (one round trip, atomic).
_CREATE_WITH_INTENT = text(
    f"""WITH created AS (
  INSERT INTO tasks (title, description, status, due_date, owner_id)
  VALUES (:title, :description, :status, :due_date, :owner_id)
  RETURNING {_TASK_COLUMNS}
), intent AS (
  INSERT INTO outbox (id, job, args, requested_by, request_id)
  SELECT :intent_id, :job, json_build_object('task_id', id)::text, :owner_id, :request_id
  FROM created
)
SELECT {_TASK_COLUMNS} FROM created"""
).columns(*TASKS.c)
_INSERT_TASK = insert(TASKS).returning(TASKS)
_INSERT_INTENT = insert(OUTBOX)


def writes_in_one_statement(connection: AsyncConnection) -> bool:
    """Whether a task and its intent are one statement on this database (else: a transaction)."""
    return connection.dialect.name == "postgresql"


def new_id() -> str:
    return uuid.uuid4().hex


def _args(task_id: int) -> str:
    return orjson.dumps({"task_id": task_id}).decode()


async def insert_task_with_intent(
    connection: AsyncConnection, values: dict[str, Any], request_id: str | None
) -> Any:
    """Insert a task and its confirmation e-mail's intent, atomically: one statement on
    PostgreSQL; on SQLite (which has no INSERT in a WITH) two, in the caller's transaction
    (`writes_in_one_statement` says which)."""
    job, intent_id = JobName.SEND_TASK_CREATED_EMAIL.value, new_id()
    values = {"description": None, "status": "pending", "due_date": None, **values}
    if writes_in_one_statement(connection):
        params = {**values, "intent_id": intent_id, "job": job, "request_id": request_id}
        return (await connection.execute(_CREATE_WITH_INTENT, params)).first()
    task = (await connection.execute(_INSERT_TASK, values)).first()
    if task is not None:
        await connection.execute(
            _INSERT_INTENT,
            {
                "id": intent_id,
                "job": job,
                "args": _args(task.id),
                "requested_by": values["owner_id"],
                "request_id": request_id,
            },
        )
    return task


async def insert_processing_intent(
    connection: AsyncConnection,
    task_id: int,
    requested_by: int,
    request_id: str | None,
    visible: ColumnElement[bool],
) -> str | None:
    """The processing job's intent for a task the requester may see, in one statement; its id,
    or None when no such task is visible."""
    intent_id = new_id()
    chosen = select(
        literal(intent_id),
        literal(JobName.PROCESS_TASK.value),
        literal(_args(task_id)),
        literal(requested_by),
        literal(request_id),
    ).where(TASKS.c.id == task_id, visible)
    columns = ["id", "job", "args", "requested_by", "request_id"]
    statement = insert(OUTBOX).from_select(columns, chosen).returning(OUTBOX.c.id)
    found: str | None = await connection.scalar(statement)
    return found


async def insert_cache_versions(connection: AsyncConnection, versions: Sequence[str]) -> None:
    """Cache versions a committed write could not bump, for the relay."""
    await connection.execute(
        _INSERT_INTENT,
        {
            "id": new_id(),
            "job": CACHE_VERSIONS,
            "args": orjson.dumps({"versions": list(versions)}).decode(),
            "requested_by": 0,
            "request_id": None,
        },
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Pending:
    """An entry waiting for the relay."""

    id: str
    job: str
    args: dict[str, Any]
    requested_by: int
    request_id: str | None
    created_at: dt.datetime
    sent: bool = False

    def request(self) -> JobRequest:
        return JobRequest(
            self.job, int(self.args["task_id"]), self.requested_by, self.request_id, self.id
        )

    @property
    def versions(self) -> list[str]:
        return [str(v) for v in self.args.get("versions", [])]


_PENDING = (
    select(OUTBOX).where(OUTBOX.c.sent_at.is_(None)).order_by(OUTBOX.c.created_at, OUTBOX.c.id)
)


async def pending(connection: AsyncConnection, limit: int) -> list[Pending]:
    """The oldest pending entries, locked for this transaction: on PostgreSQL `FOR UPDATE SKIP
    LOCKED`, so that relays on other connections take others (SQLite has one writer)."""
    query = _PENDING.limit(limit)
    if connection.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [_pending(row) for row in (await connection.execute(query)).all()]


def _pending(row: Any) -> Pending:
    args = orjson.loads(row.args)
    return Pending(
        row.id,
        row.job,
        args,
        row.requested_by,
        row.request_id,
        row.created_at,
        row.sent_at is not None,
    )


async def mark_sent(connection: AsyncConnection, ids: Sequence[str]) -> None:
    if ids:
        await connection.execute(
            update(OUTBOX)
            .where(OUTBOX.c.id.in_(list(ids)))
            .values(sent_at=_utc_now(), attempts=OUTBOX.c.attempts + 1)
        )


async def count_attempt(connection: AsyncConnection, ids: Sequence[str]) -> None:
    """The relay tried these and could not hand them over (they stay pending)."""
    if ids:
        await connection.execute(
            update(OUTBOX).where(OUTBOX.c.id.in_(list(ids))).values(attempts=OUTBOX.c.attempts + 1)
        )


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def prune(connection: AsyncConnection, older_than: dt.datetime) -> int:
    """Delete the entries sent before `older_than`; how many."""
    result = await connection.execute(
        delete(OUTBOX).where(OUTBOX.c.sent_at.is_not(None), OUTBOX.c.sent_at < older_than)
    )
    return int(result.rowcount or 0)


@dataclasses.dataclass(frozen=True, slots=True)
class Backlog:
    pending: int
    oldest_seconds: float  # 0 when nothing is pending


async def backlog(connection: AsyncConnection) -> Backlog:
    row = (
        await connection.execute(
            select(func.count(), func.min(OUTBOX.c.created_at)).where(OUTBOX.c.sent_at.is_(None))
        )
    ).one()
    count, oldest = int(row[0]), row[1]
    if oldest is None:
        return Backlog(count, 0.0)
    return Backlog(count, max(0.0, (_utc_now() - oldest).total_seconds()))


async def job_entry(connection: AsyncConnection, job_id: str) -> Pending | None:
    """A job's entry by its id, sent or not (None: no such job in the outbox)."""
    query = select(OUTBOX).where(OUTBOX.c.id == job_id, OUTBOX.c.job != CACHE_VERSIONS)
    row = (await connection.execute(query)).first()
    return None if row is None else _pending(row)

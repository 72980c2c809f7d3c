"""Transactions mean something: a session writes only when committed, and a transaction that
fails part-way leaves nothing behind (on SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from taskapi.domain.accounts import delete_user
from taskapi.domain.models import Task, User
from taskapi.infra.db import is_foreign_key_violation
from tests.conftest import state_of


async def _role_of(app, user_id: int) -> str | None:
    async with state_of(app).db.connection() as connection:
        return await connection.scalar(select(User.role).where(User.id == user_id))


async def test_a_session_writes_only_when_committed(app, make_account):
    account = await make_account()
    database = state_of(app).db
    async with database.session() as session:
        await session.execute(update(User).where(User.id == account.id).values(role="admin"))
    assert await _role_of(app, account.id) == "user"  # closed without commit: rolled back
    async with database.session() as session:
        await session.execute(update(User).where(User.id == account.id).values(role="admin"))
        await session.commit()
    assert await _role_of(app, account.id) == "admin"


async def test_a_transaction_that_fails_part_way_writes_nothing(app, make_account):
    account = await make_account()
    api_task = await app.test_client().post(
        "/api/tasks/", headers=account.headers, json={"title": "kept"}
    )
    assert api_task.status_code == 201
    with pytest.raises(RuntimeError, match="after the deletes"):
        async with state_of(app).db.transaction() as connection:
            assert await delete_user(connection, None, account.id)
            raise RuntimeError("after the deletes")
    assert await _role_of(app, account.id) == "user"
    async with state_of(app).db.connection() as connection:
        owned = await connection.scalar(select(Task.id).where(Task.owner_id == account.id))
    assert owned is not None


async def test_a_foreign_key_violation_is_told_apart_from_other_refusals(app, make_account):
    """On both databases: a task for a missing owner is a foreign-key violation, a task with
    a status its CHECK constraint refuses is not."""
    account = await make_account()
    async with state_of(app).db.connection() as connection:
        with pytest.raises(IntegrityError) as missing_owner:
            await connection.execute(insert(Task).values(title="t", owner_id=account.id + 1000))
        with pytest.raises(IntegrityError) as checked:
            await connection.execute(
                insert(Task).values(title="t", owner_id=account.id, status="bogus")
            )
    assert is_foreign_key_violation(missing_owner.value)
    assert not is_foreign_key_violation(checked.value)

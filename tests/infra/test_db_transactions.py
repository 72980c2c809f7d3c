"""Units of work mean something (on SQLite and PostgreSQL): a transaction that fails part-way
leaves nothing behind and hands no change over; a committed one hands its changes over once it
has committed."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from taskapi.domain import work
from taskapi.domain.accounts import delete_user
from taskapi.domain.models import Task, User
from taskapi.infra.db import is_foreign_key_violation
from tests.conftest import state_of


async def _role_of(app, user_id: int) -> str | None:
    async with state_of(app).db.connection() as connection:
        return await connection.scalar(select(User.role).where(User.id == user_id))


async def _list(client, account) -> tuple[list[str], str]:
    response = await client.get("/api/tasks/", headers=account.headers)
    assert response.status_code == 200
    titles = [task["title"] for task in (await response.get_json())["data"]]
    return titles, response.headers["X-Cache"]


async def test_a_transaction_that_fails_part_way_writes_nothing_and_hands_nothing_over(
    app, make_account
):
    """The unit rolls back: the account and its task stay, and its changes never reach the
    effects (the owner's cached list is still served: no version was bumped)."""
    account = await make_account()
    client = app.test_client()
    assert (
        await client.post("/api/tasks/", headers=account.headers, json={"title": "kept"})
    ).status_code == 201
    assert await _list(client, account) == (["kept"], "MISS")
    assert await _list(client, account) == (["kept"], "HIT")
    state = state_of(app)
    with pytest.raises(RuntimeError, match="after the deletes"):
        async with work.transaction(state.db, state.effects) as unit:
            assert await delete_user(unit, account.id)
            raise RuntimeError("after the deletes")
    assert await _role_of(app, account.id) == "user"
    async with state.db.connection() as connection:
        owned = await connection.scalar(select(Task.id).where(Task.owner_id == account.id))
    assert owned is not None
    assert await _list(client, account) == (["kept"], "HIT")


async def test_a_committed_transaction_hands_its_changes_over_after_the_commit(app, make_account):
    account, admin = await make_account(), await make_account("admin")
    client = app.test_client()
    assert (
        await client.post("/api/tasks/", headers=account.headers, json={"title": "gone"})
    ).status_code == 201
    assert await _list(client, admin) == (["gone"], "MISS")
    assert await _list(client, admin) == (["gone"], "HIT")
    state = state_of(app)
    async with work.transaction(state.db, state.effects) as unit:
        assert await delete_user(unit, account.id)
        assert await _list(client, admin) == (["gone"], "HIT")  # not yet committed
    assert await _role_of(app, account.id) is None
    assert await _list(client, admin) == ([], "MISS")


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

"""`updated_at` strictly increases on every write of a task, whichever statement writes it (the
task service, the process job) and whatever the database clock says: a write within the same
clock tick, or with the clock behind the stored time, still moves it one tick forward."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from taskapi.domain import work
from taskapi.domain.jobs import process_task
from taskapi.domain.tasks import TASKS, create_task, update_task
from taskapi.domain.viewer import Viewer
from taskapi.wiring import job_resources
from tests.conftest import state_of

AHEAD = dt.datetime(2999, 1, 1, tzinfo=dt.UTC)  # a stored time the database clock is behind


def _viewer(user_id: int) -> Viewer:
    return Viewer(id=user_id, role="user")


async def _updated_at(connection, task_id: int) -> dt.datetime:
    stamp: dt.datetime = await connection.scalar(
        select(TASKS.c.updated_at).where(TASKS.c.id == task_id)
    )
    return stamp


async def test_a_write_with_the_clock_behind_the_stored_time_still_moves_it(app, make_account):
    account = await make_account()
    state = state_of(app)
    async with work.transaction(state.db, state.effects) as unit:  # the task and its e-mail
        task = await create_task(unit, _viewer(account.id), {"title": "t"})
    async with state.db.connection() as connection:
        await connection.execute(
            update(TASKS).where(TASKS.c.id == task.id).values(updated_at=AHEAD)
        )
        async with work.single_statement(connection, state.effects) as unit:
            written = await update_task(unit, _viewer(account.id), task.id, {"title": "u"})
    assert written.updated_at > AHEAD
    ctx = {"taskapi": job_resources(state)}
    await process_task(ctx, task.id, account.id)
    async with state.db.engine.connect() as connection:
        assert await _updated_at(connection, task.id) > written.updated_at


async def test_two_writes_in_one_transaction_get_increasing_times(app, make_account):
    """PostgreSQL's clock stands still within a transaction: the second write still moves."""
    account = await make_account()
    viewer = _viewer(account.id)
    state = state_of(app)
    async with work.transaction(state.db, state.effects) as unit:
        task = await create_task(unit, viewer, {"title": "t"})
        first = await update_task(unit, viewer, task.id, {"title": "1"})
        second = await update_task(unit, viewer, task.id, {"title": "2"})
    assert task.updated_at < first.updated_at < second.updated_at

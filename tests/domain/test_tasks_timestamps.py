"""`updated_at` strictly increases on every write of a task, whichever statement writes it (the
task service, the process job) and whatever the database clock says: a write within the same
clock tick, or with the clock behind the stored time, still moves it one tick forward."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from taskapi.domain.effects import TaskEffects
from taskapi.domain.jobs import JobResources, process_task
from taskapi.domain.tasks import TASKS, create_task, update_task
from taskapi.domain.viewer import Viewer
from taskapi.infra.mail import Mailer
from tests.conftest import state_of

AHEAD = dt.datetime(2999, 1, 1, tzinfo=dt.UTC)  # a stored time the database clock is behind


NO_EFFECTS = TaskEffects(None, None)


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
    async with state.db.engine.connect() as connection:
        task = await create_task(connection, _viewer(account.id), {"title": "t"}, NO_EFFECTS)
        await connection.execute(
            update(TASKS).where(TASKS.c.id == task.id).values(updated_at=AHEAD)
        )
        await connection.commit()
        written = await update_task(
            connection, _viewer(account.id), task.id, {"title": "u"}, NO_EFFECTS
        )
        await connection.commit()
    assert written.updated_at > AHEAD
    ctx = {"taskapi": JobResources(state.settings, state.db, NO_EFFECTS, Mailer(state.settings))}
    await process_task(ctx, task.id, account.id)
    async with state.db.engine.connect() as connection:
        assert await _updated_at(connection, task.id) > written.updated_at


async def test_two_writes_in_one_transaction_get_increasing_times(app, make_account):
    """PostgreSQL's clock stands still within a transaction: the second write still moves."""
    account = await make_account()
    viewer = _viewer(account.id)
    async with state_of(app).db.engine.begin() as connection:
        task = await create_task(connection, viewer, {"title": "t"}, NO_EFFECTS)
        first = await update_task(connection, viewer, task.id, {"title": "1"}, NO_EFFECTS)
        second = await update_task(connection, viewer, task.id, {"title": "2"}, NO_EFFECTS)
    assert task.updated_at < first.updated_at < second.updated_at

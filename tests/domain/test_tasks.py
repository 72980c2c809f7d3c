"""Reads and writes by id act on that task only, when the caller can see several; pages walk
tasks that share a creation time."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event

from taskapi.domain import work
from taskapi.domain.tasks import (
    ANY_VERSION,
    PROCESSED_MARK,
    create_task,
    get_task_for,
    list_tasks,
    process_task,
    update_task,
)
from taskapi.domain.viewer import Viewer
from tests.conftest import state_of, tasks_sharing_one_created_at


async def test_get_by_id_returns_that_task_among_several(client_as):
    api = await client_as("user")
    tasks = [await api.create_task(title=title) for title in ("first", "second", "third")]
    for task in reversed(tasks):
        response = await api.get(f"/api/tasks/{task['id']}")
        assert (await response.get_json())["data"]["title"] == task["title"]


async def test_patch_by_id_changes_that_task_only(client_as):
    api = await client_as("user")
    first, second = await api.create_task(title="first"), await api.create_task(title="second")
    response = await api.patch(f"/api/tasks/{second['id']}", json={"title": "changed"})
    assert (await response.get_json())["data"]["id"] == second["id"]
    titles = [
        (await (await api.get(f"/api/tasks/{t['id']}")).get_json())["data"]["title"]
        for t in (first, second)
    ]
    assert titles == ["first", "changed"]


async def test_delete_by_id_removes_that_task_only(client_as):
    api = await client_as("user")
    first, second = await api.create_task(title="first"), await api.create_task(title="second")
    assert (await api.delete(f"/api/tasks/{second['id']}")).status_code == 204
    assert (await api.get(f"/api/tasks/{first['id']}")).status_code == 200
    assert (await api.get(f"/api/tasks/{second['id']}")).status_code == 404


@pytest.mark.parametrize("limit", [1, 2])
async def test_pages_walk_tasks_that_share_a_created_at_in_order(app, make_account, limit):
    """A page boundary among tied times: each task once, newest id first, no gap."""
    account = await make_account()
    viewer = Viewer(account.id, "user")
    state = state_of(app)
    async with work.transaction(state.db, state.effects) as unit:
        older = await create_task(unit, viewer, {"title": "older"})
    tied = await tasks_sharing_one_created_at(app, account.id, 4)
    async with work.transaction(state.db, state.effects) as unit:
        newer = await create_task(unit, viewer, {"title": "newer"})
    seen, cursor, pages = [], None, 0
    async with state.db.engine.connect() as connection:
        while True:
            page, cursor = await list_tasks(
                connection, viewer, status=None, limit=limit, after=cursor
            )
            seen += [row.id for row in page]
            pages += 1
            if cursor is None:
                break
            assert pages < 10, seen
    assert seen == [newer.id, *reversed(tied), older.id]


@pytest.mark.parametrize("description", [None, "d", "d [Processed]", "50%_ [Processed"])
async def test_processing_twice_marks_the_description_once(app, make_account, description):
    account = await make_account()
    state = state_of(app)
    async with work.transaction(state.db, state.effects) as unit:
        task = await create_task(
            unit, Viewer(account.id, "user"), {"title": "t", "description": description}
        )
        first = await process_task(unit, task.id, account.id)
        second = await process_task(unit, task.id, account.id)
    base = description or ""
    expected = base if base.endswith(PROCESSED_MARK) else base + PROCESSED_MARK
    assert first == second == expected


@pytest.mark.parametrize("limit", [1, 3])
async def test_a_page_asks_the_database_for_one_row_more_than_it_shows(app, make_account, limit):
    """Reading a page never reads the viewer's whole list: the statement's LIMIT is the page
    size plus the one row that tells whether there is a next page."""
    account = await make_account()
    viewer = Viewer(account.id, "user")
    state = state_of(app)
    statements: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "tasks" in statement:
            statements.append((statement, parameters))

    async with work.transaction(state.db, state.effects) as unit:
        for i in range(limit + 3):
            await create_task(unit, viewer, {"title": f"t{i}"})
    async with state.db.engine.connect() as connection:  # this connection's statements only
        event.listen(connection.sync_connection, "before_cursor_execute", record)
        page, cursor = await list_tasks(connection, viewer, status=None, limit=limit, after=None)
    assert len(page) == limit and cursor is not None
    ((statement, parameters),) = statements
    assert _limit_of(statement, list(parameters)) == limit + 1, (statement, parameters)


def _limit_of(statement: str, parameters: list) -> object:
    """The value bound to the statement's LIMIT (`LIMIT $n` on asyncpg, `LIMIT ?` on SQLite)."""
    head, found, tail = statement.upper().rpartition("LIMIT")
    assert found, statement
    numbered = re.match(r"\s*\$(\d+)", tail)
    return parameters[int(numbered.group(1)) - 1 if numbered else head.count("?")]


async def test_every_write_of_a_task_moves_its_version_on_by_one(app, make_account):
    """In the statement that writes: the service's updates and the processing job's."""
    account = await make_account()
    viewer = Viewer(account.id, "user")
    state = state_of(app)
    async with work.transaction(state.db, state.effects) as unit:
        task = await create_task(unit, viewer, {"title": "t"})
        updated = await update_task(unit, viewer, task.id, {"title": "u"})
        await process_task(unit, task.id, account.id)
        processed = await get_task_for(unit.connection, viewer, task.id)
        again = await update_task(unit, viewer, task.id, {"status": "pending"}, ANY_VERSION)
    assert [task.version, updated.version, processed.version, again.version] == [1, 2, 3, 4]

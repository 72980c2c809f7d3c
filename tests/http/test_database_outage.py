"""PostgreSQL stops or restarts under the API: every answer is 2xx or a 503 with Retry-After (never
a 500), nothing committed is lost, the API recovers by itself, and each outage is logged once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import select

from taskapi.app import create_app
from taskapi.domain import outbox, work
from taskapi.domain.effects import TaskEffects
from taskapi.domain.relay import Relay
from taskapi.domain.tasks import TASKS, create_task
from taskapi.domain.viewer import Viewer
from taskapi.settings import Settings
from tests.conftest import create_account, make_settings, migrate_to_head, state_of
from tests.services import PostgresServer, running_postgres, until

RECOVERY_DEADLINE_SECONDS = 30.0
CLIENTS = 4
LOAD_COMMITS = 40  # creates before the restart, and again once the API answers again


@pytest.fixture(scope="module")
def restartable_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this module's own, so that restarting it disturbs no other test."""
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def restartable_settings(restartable_postgres: PostgresServer) -> Settings:
    settings = make_settings(restartable_postgres.create_database("taskapi_restarts"))
    migrate_to_head(settings)
    return settings


@pytest.fixture
async def app_on_restartable(
    restartable_postgres: PostgresServer, restartable_settings: Settings
) -> AsyncIterator[Quart]:
    """An app instance (no Redis) on the restartable server, which runs again afterwards."""
    application = create_app(restartable_settings)
    async with application.test_app():
        async with state_of(application).db.transaction() as connection:
            await connection.execute(TASKS.delete())
        yield application
    if restartable_postgres.process is None:  # a failed test left it stopped
        restartable_postgres.start()


def _outage_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "taskapi.infra.db"]


def _unhandled(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage() == "unhandled error"]


def _assert_unavailable(response: Any, body: dict[str, Any]) -> None:
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert body["error"]["code"] == "service_unavailable"


async def test_a_stopped_database_answers_503_then_the_api_recovers_by_itself(
    app_on_restartable: Quart, restartable_postgres: PostgresServer, caplog
):
    app = app_on_restartable
    account = await create_account(app)
    client = app.test_client()
    assert (await client.get("/api/tasks/", headers=account.headers)).status_code == 200
    caplog.set_level(logging.WARNING, logger="taskapi")

    await asyncio.to_thread(restartable_postgres.shutdown)
    for _ in range(10):
        listed = await client.get("/api/tasks/", headers=account.headers)
        _assert_unavailable(listed, await listed.get_json())
    created = await client.post("/api/tasks/", headers=account.headers, json={"title": "x"})
    _assert_unavailable(created, await created.get_json())
    login = await client.post(
        "/auth/login", json={"username": account.username, "password": account.password}
    )
    _assert_unavailable(login, await login.get_json())
    (first,) = _outage_lines(caplog)
    assert first.startswith("database unavailable: ")
    assert "Traceback" not in caplog.text

    await asyncio.to_thread(restartable_postgres.start)

    async def serving() -> bool:
        return (await client.get("/api/tasks/", headers=account.headers)).status_code == 200

    await until(serving, "the API to answer again", RECOVERY_DEADLINE_SECONDS)
    assert _outage_lines(caplog) == [first, "database available again"]
    assert _unhandled(caplog) == []


async def test_a_restart_under_load_loses_no_commit_and_answers_no_500(
    app_on_restartable: Quart, restartable_postgres: PostgresServer, caplog
):
    """Four clients create and list in a loop while PostgreSQL restarts (fast shutdown, then
    start): each answer is 2xx or a 503 with Retry-After, each 201's task is in the database."""
    app = app_on_restartable
    accounts = [await create_account(app) for _ in range(CLIENTS)]
    caplog.set_level(logging.WARNING, logger="taskapi")
    statuses: list[int] = []
    wrong: list[str] = []
    committed: list[int] = []
    stop = asyncio.Event()

    async def load(index: int) -> None:
        client = app.test_client()
        headers = accounts[index].headers
        while not stop.is_set():
            for response in (
                await client.post("/api/tasks/", headers=headers, json={"title": f"c{index}"}),
                await client.get("/api/tasks/?limit=5", headers=headers),
            ):
                statuses.append(response.status_code)
                body = await response.get_json()
                if response.status_code == 201:
                    committed.append(body["data"]["id"])
                elif response.status_code == 503:
                    if response.headers.get("Retry-After") != "1":
                        wrong.append(f"503 without Retry-After: {body}")
                elif not 200 <= response.status_code < 300:
                    wrong.append(f"{response.status_code}: {body}")

    clients = [asyncio.create_task(load(index)) for index in range(CLIENTS)]
    try:
        await until(lambda: len(committed) >= LOAD_COMMITS, "the load to commit creates")
        await asyncio.to_thread(restartable_postgres.shutdown)
        await asyncio.to_thread(restartable_postgres.start)
        restarted_at = len(committed)
        await until(
            lambda: len(committed) >= restarted_at + LOAD_COMMITS,
            "creates to commit again after the restart",
            RECOVERY_DEADLINE_SECONDS,
        )
    finally:
        stop.set()
        await asyncio.gather(*clients)

    assert wrong == []
    assert statuses.count(503) > 0  # the load met the outage
    async with state_of(app).db.connection() as connection:
        stored = set(await connection.scalars(select(TASKS.c.id)))
    assert set(committed) <= stored, sorted(set(committed) - stored)
    assert _unhandled(caplog) == []
    lines = _outage_lines(caplog)
    assert len(lines) == 2 and lines[1] == "database available again", lines


async def test_a_relay_listens_again_after_a_database_restart(
    app_on_restartable, restartable_postgres
):
    """A relay that polls once a minute takes a commit at once after PostgreSQL restarted: its
    listener's connection was lost, and it listened again."""
    parts = state_of(app_on_restartable)
    relay = Relay(
        parts.db, parts.queue, parts.effects.publisher, poll_seconds=60, retention_seconds=60
    )
    account = await create_account(app_on_restartable)
    await relay.start()
    try:
        restartable_postgres.shutdown()
        restartable_postgres.start()
        quiet = TaskEffects(parts.cache, parts.effects.publisher)  # wakes no relay itself

        async def written() -> bool:
            try:
                async with work.transaction(parts.db, quiet) as unit:
                    await create_task(unit, Viewer(account.id, "user"), {"title": "after"})
            except Exception:  # the pool's connections from before the restart
                return False
            return True

        await until(written, "a write after the restart", RECOVERY_DEADLINE_SECONDS)

        async def relayed() -> bool:
            async with parts.db.connection() as connection:
                return (await outbox.backlog(connection)).pending == 0

        await until(relayed, "the relay, after its backoff, to take what waits", 30)
        await until(relay._listening, "the relay to listen again", RECOVERY_DEADLINE_SECONDS)
        await written()  # now only its NOTIFY can wake the relay before a minute is out
        await until(relayed, "the relay to be woken by the commit", 10)
    finally:
        await relay.stop()

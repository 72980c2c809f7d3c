"""Behind a real PgBouncer in transaction mode (a pool of 4 server connections for the 20 client
connections of two app instances): with TASKAPI_DB_PGBOUNCER two instances run the contract
flow and 200 concurrent mixed requests without an error; without it the same run fails with
asyncpg's prepared statement errors. The outbox relay listens only where it can."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from quart import Quart

from taskapi.domain import outbox
from taskapi.domain.relay import Relay
from taskapi.wiring import build_parts
from tests.conftest import PASSWORD, Account, create_account, replaced, state_of, taskapi_records
from tests.services import PgBouncerServer, PostgresServer, running_pgbouncer, until

POOL_SIZE = 4
CONCURRENT = 200
PREPARED = "prepared statement"


@pytest.fixture(scope="module")
def pgbouncer(postgres_server: PostgresServer) -> Iterator[PgBouncerServer]:
    with running_pgbouncer(postgres_server, pool_size=POOL_SIZE) as server:
        yield server


async def _bounced_apps(
    make_apps: Any, pgbouncer: PgBouncerServer, **overrides: Any
) -> list[Quart]:
    """Two instances whose DATABASE_URL is the pgbouncer (after one direct instance that
    empties the tables, as make_apps' first call does)."""
    (direct,) = await make_apps(1)
    database = state_of(direct).settings.database_url.rsplit("/", 1)[1]
    return list(await make_apps(2, database_url=pgbouncer.url(database), **overrides))


async def _contract_flow(first: Quart, second: Quart) -> list[str]:
    """Register and log in on one instance, write and read on both, log out on one and be
    refused on the other; what did not answer as expected, one line each."""
    a, b = first.test_client(), second.test_client()
    problems: list[str] = []

    async def expect(step: str, response: Any, status: int) -> Any:
        if response.status_code != status:
            problems.append(f"{step}: {response.status_code} (expected {status})")
            return None
        return await response.get_json()

    user = {"username": "bounced", "email": "bounced@example.com", "password": PASSWORD}
    await expect("register", await a.post("/auth/register", json=user), 201)
    login = {"username": "bounced", "password": PASSWORD}
    tokens = await expect("login", await b.post("/auth/login", json=login), 200)
    if tokens is None:
        return problems
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    created = await expect(
        "create", await a.post("/api/tasks/", headers=auth, json={"title": "via pgbouncer"}), 201
    )
    if created is None:
        return problems
    path = f"/api/tasks/{created['data']['id']}"
    read = await b.get(path, headers=auth)
    await expect("read on the other", read, 200)
    etag = read.headers.get("ETag", "*")
    changed = {**auth, "If-Match": etag}
    await expect("patch", await b.patch(path, headers=changed, json={"status": "completed"}), 200)
    listed = await expect("list", await a.get("/api/tasks/", headers=auth), 200)
    if listed is not None and [t["status"] for t in listed["data"]] != ["completed"]:
        problems.append(f"list: {listed['data']}")
    await expect("process", await a.post(f"{path}/process", headers=auth), 202)
    await expect("logout", await a.post("/auth/logout", headers=auth), 204)
    await expect("refused on the other", await b.get("/auth/me", headers=auth), 401)
    return problems


async def _mixed_load(apps: list[Quart], accounts: list[Account]) -> list[int]:
    """CONCURRENT requests at once over both instances: creates, reads, lists, updates,
    logins; the status of each."""
    seeds = [
        await apps[0]
        .test_client()
        .post("/api/tasks/", headers=account.headers, json={"title": "seed"})
        for account in accounts
    ]
    seed_ids = [(await seed.get_json())["data"]["id"] for seed in seeds]

    async def one(i: int) -> int:
        client = apps[i % 2].test_client()
        account, task_id = accounts[i % len(accounts)], seed_ids[i % len(accounts)]
        kind = i % 5
        if kind == 0:
            response = await client.post(
                "/api/tasks/", headers=account.headers, json={"title": f"load {i}"}
            )
        elif kind == 1:
            response = await client.get(f"/api/tasks/{task_id}", headers=account.headers)
        elif kind == 2:
            response = await client.get("/api/tasks/?limit=5", headers=account.headers)
        elif kind == 3:
            response = await client.patch(
                f"/api/tasks/{task_id}", headers=account.headers, json={"title": f"edit {i}"}
            )
        else:
            response = await client.post(
                "/auth/login", json={"username": account.username, "password": PASSWORD}
            )
        return int(response.status_code)

    return list(await asyncio.gather(*(one(i) for i in range(CONCURRENT))))


EXPECTED = {200, 201}


async def _run(apps: list[Quart]) -> tuple[list[str], list[int]]:
    problems = await _contract_flow(*apps)
    accounts = [await create_account(apps[0]) for _ in range(4)]
    statuses = await _mixed_load(apps, accounts)
    return problems, statuses


async def test_two_instances_behind_pgbouncer_answer_without_an_error(make_apps, pgbouncer):
    apps = await _bounced_apps(make_apps, pgbouncer, db_pgbouncer=True)
    problems, statuses = await _run(apps)
    assert problems == []
    assert len(statuses) == CONCURRENT
    assert [s for s in statuses if s not in EXPECTED] == []


async def test_without_the_setting_the_same_run_fails(make_apps, pgbouncer, caplog):
    """The setting is known to matter: the same run through the same pgbouncer, without it,
    answers 500s, logged as asyncpg's prepared statement errors."""
    with taskapi_records(caplog), caplog.at_level(logging.ERROR, logger="taskapi"):
        apps = await _bounced_apps(make_apps, pgbouncer, db_pgbouncer=False)
        try:
            problems, statuses = await _run(apps)
        except AssertionError:  # a setup step (an account, a seed task) failed: so be it
            problems, statuses = ["setup"], []
    failed = [s for s in statuses if s >= 500]
    assert problems or failed
    logged = "\n".join(str(r.exc_info[1]) for r in caplog.records if r.exc_info)
    assert PREPARED in logged and ("does not exist" in logged or "already exists" in logged)


async def test_a_worker_relay_behind_pgbouncer_listens_only_on_the_direct_url(
    make_apps, pgbouncer, postgres_server
):
    """LISTEN does not survive transaction pooling: behind PgBouncer a worker's relay only
    polls, unless TASKAPI_DB_LISTEN_URL gives it PostgreSQL itself; then a commit wakes it."""
    apps = await _bounced_apps(make_apps, pgbouncer, db_pgbouncer=True)
    settings = state_of(apps[0]).settings
    polling = build_parts(settings, "worker").relay
    assert polling is not None and not polling.listen and polling.poll_seconds is not None
    direct = state_of((await make_apps(1))[0]).settings.database_url
    listening_settings = replaced(settings, db_listen_url=direct, outbox_poll_seconds=60)
    parts = build_parts(listening_settings, "worker")
    relay = parts.relay
    assert isinstance(relay, Relay) and relay.listen
    await parts.open()
    try:
        account = await create_account(apps[0])
        response = (
            await apps[1]
            .test_client()
            .post("/api/tasks/", headers=account.headers, json={"title": "wakes the relay"})
        )
        assert response.status_code == 201

        async def relayed() -> bool:
            async with state_of(apps[0]).db.connection() as connection:
                return (await outbox.backlog(connection)).pending == 0

        # far sooner than the 60 s poll: the NOTIFY reached it on the direct connection
        await until(relayed, "the relay to be woken by the commit", 20)
    finally:
        await parts.close()

"""The outbox: a write's jobs are committed with it and relayed into the queue by the workers
(in process for the embedded default), each once; cache versions a write could not bump are
bumped by the relay; the backlog shows in /health/ready. Real PostgreSQL, Redis, arq workers
and an SMTP sink."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap

from arq.constants import default_queue_name
from sqlalchemy import func, select

from taskapi.domain import outbox, work
from taskapi.domain.outbox import OUTBOX
from taskapi.domain.relay import Relay
from taskapi.domain.tasks import create_task
from taskapi.domain.viewer import Viewer
from taskapi.infra.stores import StoreUnavailable
from tests.conftest import create_account, redis_of, replaced, state_of
from tests.domain.test_jobs import run_worker_until_idle, settings_of, worker_relay
from tests.services import until
from tests.smtp import smtp_sink


async def _pending(app) -> int:
    async with state_of(app).db.connection() as connection:
        return (await outbox.backlog(connection)).pending


async def _create(client, account, title: str = "t") -> dict:
    response = await client.post("/api/tasks/", headers=account.headers, json={"title": title})
    assert response.status_code == 201, await response.get_data(as_text=True)
    return (await response.get_json())["data"]


async def test_creates_during_a_redis_outage_send_each_email_once_when_it_is_back(
    make_apps, redis_server
):
    (app,) = await make_apps(1)  # the default settings: revocation from the database
    account = await create_account(app)
    client = app.test_client()
    redis_server.stop()
    try:
        created = [await _create(client, account, f"t{i}") for i in range(20)]
    finally:
        redis_server.start()
    assert len(created) == 20
    with smtp_sink() as sink:
        await run_worker_until_idle(replaced(settings_of(app), smtp_url=sink.url))
        mails = await sink.wait_for(20)
        await run_worker_until_idle(replaced(settings_of(app), smtp_url=sink.url))
        subjects = sorted(m.message["Subject"] for m in sink.handler.delivered)
    assert subjects == sorted(f"Task Created: t{i}" for i in range(20))
    assert len(mails) == 20
    assert await _pending(app) == 0


async def test_an_api_process_killed_right_after_its_commit_still_gets_its_email_sent(
    make_apps,
):
    """A process writes a task (and its e-mail's entry) in one transaction, commits, and is
    SIGKILLed before anything else: the worker's relay still sends the e-mail, once."""
    (app,) = await make_apps(1)
    account = await create_account(app)
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from taskapi.settings import load_settings
        from taskapi.wiring import build_parts
        from taskapi.domain import work
        from taskapi.domain.tasks import create_task
        from taskapi.domain.viewer import Viewer

        async def main():
            settings = load_settings(environ={{}}, env="testing",
                database_url={settings_of(app).database_url!r},
                redis_url={settings_of(app).redis_url!r})
            parts = build_parts(settings, "app")
            await parts.open()
            async with parts.db.transaction() as connection:
                unit = work.UnitOfWork(connection, single_statement=False)
                await create_task(unit, Viewer({account.id}, "user"), {{"title": "killed"}})
            os.kill(os.getpid(), signal.SIGKILL)  # committed; its effects never run

        asyncio.run(main())
        """
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, env=os.environ.copy()
    )
    assert await asyncio.wait_for(process.wait(), 60) == -9
    with smtp_sink() as sink:
        await run_worker_until_idle(replaced(settings_of(app), smtp_url=sink.url))
        (mail,) = await sink.wait_for(1)
        await run_worker_until_idle(replaced(settings_of(app), smtp_url=sink.url))
        assert len(sink.handler.delivered) == 1
    assert mail.message["Subject"] == "Task Created: killed"


async def test_two_relays_at_once_queue_each_job_once(make_apps):
    (app,) = await make_apps(1)
    account = await create_account(app)
    parts = state_of(app)
    async with work.transaction(parts.db, parts.effects) as unit:
        for i in range(60):
            await create_task(unit, Viewer(account.id, "user"), {"title": f"t{i}"})
    first, second = worker_relay(app), worker_relay(app)
    await asyncio.gather(first.drain(), second.drain(), first.drain())
    async with redis_of(app) as redis:
        queued = await redis.zrange(default_queue_name, 0, -1)
    async with parts.db.connection() as connection:
        ids = set(await connection.scalars(select(OUTBOX.c.id)))
        attempts = set(await connection.scalars(select(OUTBOX.c.attempts)))
    assert sorted(queued) == sorted(i.encode() for i in ids)
    assert len(ids) == 60 and attempts == {1}
    # a relay that hands a batch over again (it died before its commit) doubles nothing
    jobs = []
    async with parts.db.connection() as connection:
        for row in (await connection.execute(select(OUTBOX))).all():
            jobs.append(outbox._pending(row).request())
    await parts.queue.hand_over(jobs)
    async with redis_of(app) as redis:
        assert await redis.zcard(default_queue_name) == 60


async def test_a_relay_wakes_on_a_commit_without_waiting_for_its_poll(make_apps):
    """PostgreSQL's NOTIFY (the outbox's trigger) wakes a LISTENing relay: with a poll of a
    minute, the job is queued within seconds."""
    (app,) = await make_apps(1)
    account = await create_account(app)
    parts = state_of(app)
    relay = Relay(
        parts.db, parts.queue, parts.effects.publisher, poll_seconds=60, retention_seconds=60
    )
    await relay.start()
    try:
        await _create(app.test_client(), account)

        async def queued() -> bool:
            async with redis_of(app) as redis:
                return await redis.zcard(default_queue_name) == 1

        await until(queued, "the relay to queue the e-mail", 10)
    finally:
        await relay.stop()


async def test_a_processing_job_is_queued_while_in_the_outbox_then_runs(make_apps):
    (app,) = await make_apps(1)
    account = await create_account(app)
    client = app.test_client()
    task = await _create(client, account)
    answer = await client.post(f"/api/tasks/{task['id']}/process", headers=account.headers)
    assert answer.status_code == 202
    body = await answer.get_json()
    status_url = body["status_url"]
    async with state_of(app).db.connection() as connection:
        entry = await outbox.job_entry(connection, body["job_id"])
    assert entry is not None and not entry.sent  # the job id is the outbox entry's
    waiting = await (await client.get(status_url, headers=account.headers)).get_json()
    assert waiting == {"job_id": body["job_id"], "status": "queued", "result": None}
    other = await create_account(app)
    assert (await client.get(status_url, headers=other.headers)).status_code == 404
    await run_worker_until_idle(settings_of(app))
    done = await (await client.get(status_url, headers=account.headers)).get_json()
    assert done["status"] == "complete"
    assert done["result"]["new_description"] == " [Processed]"


async def test_a_write_during_a_redis_pause_leaves_no_stale_list_once_redis_is_back(
    make_apps, redis_server
):
    """The create commits while Redis is frozen (its version bump times out); the bump waits in
    the outbox, and the relay makes it once Redis answers: the cached list is not served."""
    (app,) = await make_apps(1, redis_retry_after_ms=200)
    account = await create_account(app)
    client = app.test_client()
    await _create(client, account, "before")
    await client.get("/api/tasks/", headers=account.headers)
    cached = await client.get("/api/tasks/", headers=account.headers)
    assert cached.headers["X-Cache"] == "HIT"
    with redis_server.paused():
        await _create(client, account, "during")
    relay = worker_relay(app)

    async def relayed() -> bool:  # once the process's breaker lets Redis be tried again
        try:
            await relay.drain()
        except StoreUnavailable:
            return False
        return await _pending(app) == 0

    await until(relayed, "the relay to bump the versions", 15)

    async def fresh_and_cached() -> bool:
        answer = await client.get("/api/tasks/", headers=account.headers)
        titles = [t["title"] for t in (await answer.get_json())["data"]]
        assert titles[-1] == "before"
        if answer.headers["X-Cache"] == "HIT":
            assert titles == ["during", "before"], "a stale cached list was served"
            return True
        return False

    await until(fresh_and_cached, "the list to be cached again, fresh", 15)


async def test_readiness_shows_the_backlog_and_turns_503_when_it_lags(make_apps):
    (app,) = await make_apps(1, outbox_max_lag_seconds=1)
    account = await create_account(app)
    client = app.test_client()
    await _create(client, account)  # no worker: its e-mail waits
    ready = await (await client.get("/health/ready")).get_json()
    assert ready["outbox"]["pending"] == 1
    assert ready["checks"]["outbox"] == "ok"

    async def lagging() -> bool:
        answer = await client.get("/health/ready")
        body = await answer.get_json()
        return answer.status_code == 503 and body["checks"]["outbox"] == "lagging"

    await until(lagging, "readiness to report the lag", 10)
    await run_worker_until_idle(settings_of(app))

    async def caught_up() -> bool:
        return (await client.get("/health/ready")).status_code == 200

    await until(caught_up, "readiness once the relay caught up", 10)


async def test_sent_entries_are_pruned_after_their_retention(make_apps):
    (app,) = await make_apps(1)
    account = await create_account(app)
    await _create(app.test_client(), account)
    parts = state_of(app)
    relay = Relay(
        parts.db, parts.queue, parts.effects.publisher, poll_seconds=1, retention_seconds=0
    )
    await relay.drain()
    relay._pruned_at = -1e9
    await relay._prune()
    async with parts.db.connection() as connection:
        assert await connection.scalar(select(func.count()).select_from(OUTBOX)) == 0


async def test_the_embedded_default_runs_its_outbox_in_process(make_apps, caplog):
    (app,) = await make_apps(1, backend="memory")
    account = await create_account(app)
    await _create(app.test_client(), account, "embedded")

    async def sent() -> bool:
        return await _pending(app) == 0

    await until(sent, "the in-process relay to take the e-mail", 10)

"""Redis Sentinel failover under load: a primary, a replica and three sentinels (quorum 2); two
app instances and a real arq worker find the primary through the sentinels (their REDIS_URL
names a port where nothing listens). Reads, writes, logins and jobs run while the primary is
killed with SIGKILL; the service resumes on its own on the promoted replica, nothing committed
is lost, and limits and revocations work there."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from typing import Any

import jwt
from quart import Quart
from redis.asyncio import Redis
from sqlalchemy import select

from taskapi.app import create_app
from taskapi.domain.tasks import TASKS
from taskapi.infra.redis.state import REVOKED_KEY
from tests.conftest import PASSWORD, Account, create_account, replaced, state_of
from tests.services import SENTINEL_MASTER, SentinelGroup, free_port, running_sentinels, until
from tests.smtp import SmtpSink, smtp_sink
from tests.test_worker_settings import WorkerOutput, start_worker

log = logging.getLogger(__name__)
DOWN_AFTER_MS = 1000
RESUME_SECONDS = 15.0
ACCOUNTS = 40
LOOPS = 6
LIMIT = 30  # per minute, per user and route: the load spreads over ACCOUNTS users
PROCESSED = " [Processed]"


@dataclasses.dataclass
class Load:
    """What the clients did: each request's start and outcome (`failed`: 5xx or no answer;
    `degraded`: answered without its rate limit, which the app skips while Redis cannot
    answer), and what was committed (201 creates with their owners, 202 processing)."""

    apps: list[Quart]
    accounts: list[Account]
    requests: list[tuple[float, str]] = dataclasses.field(default_factory=list)
    created: dict[int, str] = dataclasses.field(default_factory=dict)
    owners: dict[int, Account] = dataclasses.field(default_factory=dict)
    processing: set[int] = dataclasses.field(default_factory=set)
    stopped: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    async def _request(self, i: int) -> Any:
        """Request `i`: a create, a list, a login or a processing, by turns."""
        client = self.apps[i % 2].test_client()
        account = self.accounts[i % len(self.accounts)]
        kind = i % 5
        if kind == 2:
            response = await client.get("/api/tasks/?limit=5", headers=account.headers)
        elif kind == 3:
            login = {"username": account.username, "password": PASSWORD}
            response = await client.post("/auth/login", json=login)
        elif kind == 4 and self.created:
            task_id = list(self.created)[i % len(self.created)]
            owner = self.owners[task_id]
            response = await client.post(f"/api/tasks/{task_id}/process", headers=owner.headers)
            if response.status_code == 202:
                self.processing.add(task_id)
        else:
            title = f"failover {i}"
            response = await client.post(
                "/api/tasks/", headers=account.headers, json={"title": title}
            )
            if response.status_code == 201:
                task_id = (await response.get_json())["data"]["id"]
                self.created[task_id], self.owners[task_id] = title, account
        return response

    async def run(self, loop_number: int) -> None:
        i = loop_number
        while not self.stopped.is_set():
            started = time.monotonic()
            try:
                response = await self._request(i)
            except Exception:  # no answer at all: a failure as the client sees it
                outcome = "failed"
            else:
                outcome = (
                    "failed"
                    if response.status_code >= 500
                    else "ok"
                    if "RateLimit-Limit" in response.headers
                    else "degraded"
                )
            self.requests.append((started, outcome))
            i += LOOPS


async def _revoked_in(primary_port: int, jti: str) -> bool:
    async with Redis(port=primary_port) as primary:
        return await primary.zscore(REVOKED_KEY, jti) is not None


async def _ready(app: Quart) -> bool:
    response = await app.test_client().get("/health/ready")
    body = await response.get_json()
    return bool(body and body["checks"]["redis"] == "ok")


def _window(load: Load, outcome: str, killed: float) -> str:
    """The first and last request with that outcome, in seconds after the kill."""
    times = [started - killed for started, seen in load.requests if seen == outcome]
    if not times:
        return f"0 {outcome}"
    return f"{len(times)} {outcome} from {min(times):.2f} s to {max(times):.2f} s"


async def _mail_for_every_create(sink: SmtpSink, load: Load) -> dict[str, int]:
    wanted = {f"Task Created: {title}" for title in load.created.values()}

    def counts() -> dict[str, int]:
        seen: dict[str, int] = {}
        for mail in sink.handler.delivered:
            seen[mail.message["Subject"]] = seen.get(mail.message["Subject"], 0) + 1
        return seen

    await until(lambda: wanted <= set(counts()), "an e-mail for every committed create", 25)
    return {subject: n for subject, n in counts().items() if subject in wanted}


async def test_a_failover_under_load_resumes_by_itself_and_loses_nothing(
    make_apps, shared_settings
):
    (direct,) = await make_apps(1)  # empties the tables
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # its host and port are not used
    with running_sentinels(DOWN_AFTER_MS) as group, smtp_sink() as sink:
        settings = replaced(
            shared_settings,
            redis_url=nowhere,
            redis_sentinels=group.addresses,
            redis_sentinel_master=SENTINEL_MASTER,
            ratelimit_enabled=True,
            ratelimit_default=f"{LIMIT} per minute",
            ratelimit_login="100000 per minute",
        )
        sentinel_env = {
            "TASKAPI_REDIS_SENTINELS": group.addresses,
            "TASKAPI_REDIS_SENTINEL_MASTER": SENTINEL_MASTER,
        }
        worker = start_worker(settings, nowhere, sink.url, **sentinel_env)
        output = WorkerOutput(worker)
        async with contextlib.AsyncExitStack() as stack:
            apps = [create_app(settings) for _ in range(2)]
            for app in apps:
                await stack.enter_async_context(app.test_app())
            try:
                await _exercise(apps, group, sink)
            except AssertionError as error:
                raise AssertionError(
                    f"{error}; the worker said:\n{output.text()[-3000:]}"
                ) from None
            finally:
                worker.kill()
                worker.wait()
        assert "Traceback" not in output.text(), output.text()[-3000:]
    del direct


async def _exercise(apps: list[Quart], group: SentinelGroup, sink: SmtpSink) -> None:
    accounts = [await create_account(apps[0]) for _ in range(ACCOUNTS)]
    load = Load(apps, accounts)
    loops = [asyncio.create_task(load.run(n)) for n in range(LOOPS)]
    try:
        await until(lambda: len(load.created) >= 20 and sink.handler.delivered, "load", 20)
        before = len(load.created)
        assert group.primary.process is not None
        group.primary.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        await until(lambda: group.primary_port() == group.replica.port, "the failover", 20)
        failed_over = time.monotonic()

        async def both_ready() -> bool:
            return all([await _ready(app) for app in apps])

        await until(both_ready, "both instances to use the new primary", RESUME_SECONDS)
        resumed = time.monotonic()
        await until(lambda: len(load.created) >= before + 40, "load after the failover", 20)
    finally:
        load.stopped.set()
        await asyncio.gather(*loops)
    log.warning(
        "failover: the replica promoted %.2f s after the kill, both instances ready %.2f s "
        "after that; of %s requests: %s; %s",
        failed_over - killed,
        resumed - failed_over,
        len(load.requests),
        _window(load, "failed", killed),
        _window(load, "degraded", killed),
    )
    # clients see it resume: nothing failed or went without its limit long after the failover
    unwell = [started for started, outcome in load.requests if outcome != "ok"]
    assert not unwell or max(unwell) < failed_over + RESUME_SECONDS
    assert resumed - failed_over < RESUME_SECONDS
    # nothing committed is lost
    async with state_of(apps[0]).db.connection() as connection:
        stored = set((await connection.scalars(select(TASKS.c.id))).all())
    assert set(load.created) <= stored
    # no job lost: every committed create's e-mail arrives (at least once)
    mails = await _mail_for_every_create(sink, load)

    # no job with a visible double effect: each processed task is marked once
    async def marked_once() -> bool:
        async with state_of(apps[0]).db.connection() as connection:
            rows = (
                await connection.execute(
                    select(TASKS.c.id, TASKS.c.description).where(TASKS.c.id.in_(load.processing))
                )
            ).all()
        return all((row.description or "").count(PROCESSED.strip()) == 1 for row in rows)

    await until(marked_once, "every processing job to have run", 20)
    log.warning(
        "failover: %s creates, %s e-mails repeated; %s tasks processed",
        len(load.created),
        sum(n - 1 for n in mails.values()),
        len(load.processing),
    )
    await _limits_and_revocations_on_the_new_primary(apps, group)


async def _limits_and_revocations_on_the_new_primary(
    apps: list[Quart], group: SentinelGroup
) -> None:
    """A budget shared by both instances, in the promoted replica; a logout after the
    failover refused by both instances, and recorded in the new primary."""
    account = await create_account(apps[0])
    clients = [app.test_client() for app in apps]
    statuses = [
        (await clients[i % 2].get("/auth/me", headers=account.headers)).status_code
        for i in range(LIMIT + 1)
    ]
    assert statuses.count(200) == LIMIT and statuses[-1] == 429, statuses
    revoked = await create_account(apps[1])
    assert (await clients[0].post("/auth/logout", headers=revoked.headers)).status_code == 204
    for client in clients:
        assert (await client.get("/api/tasks/", headers=revoked.headers)).status_code == 401
    jti = jwt.decode(revoked.access_token, options={"verify_signature": False})["jti"]
    assert await _revoked_in(group.replica.port, jti)

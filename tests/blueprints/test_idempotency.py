"""Idempotency-Key on POST /api/tasks/ and POST /api/tasks/<id>/process: the first request
runs, a retry with the same body gets its answer again (and creates or queues nothing), a
different body 422, a retry while the first runs 409; keys are per caller; a failed first
request stores nothing. Both backends; across two instances with Redis."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from quart import Quart
from sqlalchemy import func, select

from taskapi.domain import idempotency
from taskapi.domain.outbox import CACHE_VERSIONS, OUTBOX
from taskapi.domain.tasks import TASKS
from taskapi.http.policy import default_limits, idempotent, login_required
from taskapi.infra.stores import GateQuery
from tests.conftest import create_account, state_of
from tests.services import redis_commands_during, until

BACKENDS = ["redis", "memory"]
JSON = {"Content-Type": "application/json"}


async def _task_count(app: Quart) -> int:
    async with state_of(app).db.connection() as connection:
        return int(await connection.scalar(select(func.count()).select_from(TASKS)) or 0)


async def _queued_jobs(app: Quart) -> int:
    """The jobs the writes called for (in the outbox, for the relay)."""
    query = select(func.count()).select_from(OUTBOX).where(OUTBOX.c.job != CACHE_VERSIONS)
    async with state_of(app).db.connection() as connection:
        return int(await connection.scalar(query) or 0)


def _post(client, account, body: bytes, key: str | None, path: str = "/api/tasks/"):
    headers = {**account.headers, **JSON}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(path, headers=headers, data=body)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_retry_gets_the_first_answer_byte_for_byte_and_creates_nothing(make_apps, backend):
    (app,) = await make_apps(1, backend=backend)
    account = await create_account(app)
    client = app.test_client()
    body = b'{"title": "pay the rent"}'
    first = await _post(client, account, body, "rent-2026-12")
    retried = await _post(client, account, body, "rent-2026-12")

    assert first.status_code == retried.status_code == 201
    assert await retried.get_data() == await first.get_data()
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    for name in ("Location", "ETag", "Content-Type"):
        assert retried.headers[name] == first.headers[name]
    assert retried.headers["X-Request-ID"] != first.headers["X-Request-ID"]
    assert await _task_count(app) == 1
    assert await _queued_jobs(app) == 1  # one confirmation e-mail
    # without a key, or with another, the same body creates another task (as always)
    assert (await _post(client, account, body, None)).status_code == 201
    assert (await _post(client, account, body, "rent-2027-01")).status_code == 201
    assert await _task_count(app) == 3


@pytest.mark.parametrize("backend", BACKENDS)
async def test_processing_with_a_key_queues_one_job_and_replays_its_id(make_apps, backend):
    (app,) = await make_apps(1, backend=backend)
    account = await create_account(app)
    client = app.test_client()
    created = await client.post("/api/tasks/", headers=account.headers, json={"title": "t"})
    path = f"/api/tasks/{(await created.get_json())['data']['id']}/process"
    jobs_before = await _queued_jobs(app)
    first = await _post(client, account, b"", "process-once", path)
    again = await _post(client, account, b"", "process-once", path)
    assert first.status_code == again.status_code == 202
    assert await again.get_data() == await first.get_data()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await _queued_jobs(app) == jobs_before + 1


async def test_the_same_key_with_another_body_or_operation_is_422(client_as):
    api = await client_as()
    task = await api.create_task()
    first = await _post(api.client, api.account, b'{"title": "a"}', "k1")
    assert first.status_code == 201
    for body, path in (
        (b'{"title": "b"}', "/api/tasks/"),
        (b'{"title":"a"}', "/api/tasks/"),  # the bytes are the request
        (b"", f"/api/tasks/{task['id']}/process"),
    ):
        reused = await _post(api.client, api.account, body, "k1", path)
        assert reused.status_code == 422, body
        assert (await reused.get_json())["error"]["code"] == "idempotency_key_reused"
    listed = await (await api.get("/api/tasks/")).get_json()
    assert listed["meta"]["count"] == 2  # the one created first, and the key's


async def test_keys_belong_to_their_caller(client_as):
    alice, bob = await client_as(), await client_as()
    body = b'{"title": "mine"}'
    for api in (alice, bob):
        answer = await _post(api.client, api.account, body, "shared-key")
        assert answer.status_code == 201
        assert "Idempotent-Replayed" not in answer.headers
        assert (await answer.get_json())["data"]["owner_id"] == api.account.id


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "caf\u00e9", "tab\tkey", '"unterminated', '"bad \\escape"', '""'],
    ids=["empty", "256-chars", "not-ascii", "control", "bad-quote", "bad-escape", "empty-quoted"],
)
async def test_a_key_that_is_not_1_to_255_printable_ascii_characters_is_400(client_as, key):
    api = await client_as()
    answer = await _post(api.client, api.account, b'{"title": "t"}', key)
    assert answer.status_code == 400
    assert (await answer.get_json())["error"]["code"] == "invalid_idempotency_key"
    assert (await (await api.get("/api/tasks/")).get_json())["meta"]["count"] == 0


async def test_a_quoted_key_is_the_same_key_and_255_characters_are_fine(client_as):
    api = await client_as()
    body = b'{"title": "t"}'
    assert (await _post(api.client, api.account, body, "abc")).status_code == 201
    quoted = await _post(api.client, api.account, body, '"abc"')
    assert quoted.headers["Idempotent-Replayed"] == "true"
    assert (await _post(api.client, api.account, body, "k" * 255)).status_code == 201
    two = await api.client.post(
        "/api/tasks/",
        headers=[*api.account.headers.items(), ("Idempotency-Key", "a"), ("Idempotency-Key", "b")],
        json={"title": "t"},
    )
    assert two.status_code == 400


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_retry_while_the_first_runs_is_409_and_a_released_key_runs_again(
    make_apps, backend
):
    """The key is held as a first request holds it (claimed through the gate's store step);
    while held, retries are 409; once released (the first request failed), a retry runs."""
    (app,) = await make_apps(1, backend=backend)
    account = await create_account(app)
    client = app.test_client()
    body = b'{"title": "t"}'
    parts = state_of(app)
    held = idempotency.claim_for(
        account.id, "busy", idempotency.fingerprint("tasks.create_task:[]", body), 60
    )
    assert (await parts.gatekeeper.admit(GateQuery(claim=held))).claimed.ours

    busy = await _post(client, account, body, "busy")
    assert busy.status_code == 409
    assert (await busy.get_json())["error"]["code"] == "idempotency_key_in_flight"
    assert (await _post(client, account, b'{"title": "u"}', "busy")).status_code == 422
    assert await _task_count(app) == 0

    await parts.idempotency.release(held)
    ran = await _post(client, account, body, "busy")
    assert ran.status_code == 201
    assert "Idempotent-Replayed" not in ran.headers
    await parts.idempotency.release(held)  # no longer the holder: nothing happens
    assert (await _post(client, account, body, "busy")).headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_first_request_that_fails_with_a_5xx_stores_nothing(make_apps, backend):
    (app,) = await make_apps(1, backend=backend)
    calls = []

    @default_limits
    @login_required
    @idempotent
    async def flaky() -> tuple[bytes, int]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the first try fails")
        return b'{"ok": true}', 201

    app.add_url_rule("/test/flaky", "flaky", flaky, methods=["POST"])
    account = await create_account(app)
    client = app.test_client()
    failed = await _post(client, account, b"{}", "flaky-key", "/test/flaky")
    assert failed.status_code == 500
    ran = await _post(client, account, b"{}", "flaky-key", "/test/flaky")
    assert ran.status_code == 201
    replayed = await _post(client, account, b"{}", "flaky-key", "/test/flaky")
    assert (replayed.status_code, replayed.headers["Idempotent-Replayed"]) == (201, "true")
    assert len(calls) == 2


async def test_with_redis_down_a_keyed_post_is_503_and_its_retry_runs(make_apps, redis_server):
    (app,) = await make_apps(1)
    account = await create_account(app)
    client = app.test_client()
    body = b'{"title": "t"}'
    redis_server.stop()
    try:
        down = await _post(client, account, body, "outage")
        assert down.status_code == 503
        assert await _task_count(app) == 0
        unkeyed = await _post(client, account, body, None)  # as before: it needs no Redis
        assert unkeyed.status_code == 201
    finally:
        redis_server.start()

    async def runs() -> bool:
        return (await _post(client, account, body, "outage")).status_code == 201

    await until(runs, "a keyed POST to run once Redis is back", 15.0)
    assert await _task_count(app) == 2


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_kept_answer_expires_after_its_ttl(make_apps, backend):
    (app,) = await make_apps(1, backend=backend, idempotency_ttl_seconds=1)
    account = await create_account(app)
    client = app.test_client()
    body = b'{"title": "t"}'
    assert (await _post(client, account, body, "short")).status_code == 201

    async def runs_again() -> bool:
        answer = await _post(client, account, body, "short")
        return "Idempotent-Replayed" not in answer.headers

    await until(runs_again, "the kept answer to expire", 10.0)
    assert await _task_count(app) == 2


async def test_fifty_concurrent_posts_with_one_key_across_two_instances_make_one_task(
    make_apps,
):
    apps = await make_apps(2)
    account = await create_account(apps[0])
    clients = [app.test_client() for app in apps]
    body = orjson.dumps({"title": "exactly once"})
    answers = await asyncio.gather(
        *(_post(clients[i % 2], account, body, "once") for i in range(50))
    )
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {201, 409}, statuses
    created = [a for a in answers if a.status_code == 201]
    originals = [a for a in created if "Idempotent-Replayed" not in a.headers]
    assert len(originals) == 1
    bodies = {await a.get_data() for a in created}
    assert len(bodies) == 1
    assert await _task_count(apps[0]) == 1
    assert await _queued_jobs(apps[0]) == 1  # one e-mail in the outbox


async def test_the_claim_rides_in_the_gates_one_script(make_apps, redis_server):
    """A keyed create costs one round trip more than an unkeyed one: the answer kept after the
    view (the claim itself is part of the gate's script)."""
    (app,) = await make_apps(1)
    account = await create_account(app)
    client = app.test_client()
    seen: dict[str, list[str]] = {}
    for warm_up in (None, "warm-up"):  # connected, each script loaded once
        assert (await _post(client, account, b'{"title": "t"}', warm_up)).status_code == 201

    for key in (None, "one-trip"):

        async def create(key: str | None = key) -> None:
            assert (await _post(client, account, b'{"title": "t"}', key)).status_code == 201

        seen[str(key)] = await redis_commands_during(redis_server.url, create)
    unkeyed = ["EVALSHA", "MULTI", *["INCRBY"] * 3, "EXEC"]
    assert seen["None"] == unkeyed
    assert seen["one-trip"] == [*unkeyed, "EVALSHA"]


async def test_a_too_large_body_with_a_key_on_process_is_413(client_as, app):
    """The key's fingerprint reads the body, so a body over the limit is refused there: the
    413 the document lists for the operation."""
    api = await client_as()
    task = await api.create_task()
    body = b"x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    answer = await _post(api.client, api.account, body, "big", f"/api/tasks/{task['id']}/process")
    assert answer.status_code == 413
    assert (await answer.get_json())["error"]["code"] == "payload_too_large"
    spec = await (await api.client.get("/openapi.json")).get_json()
    assert "413" in spec["paths"]["/api/tasks/{task_id}/process"]["post"]["responses"]

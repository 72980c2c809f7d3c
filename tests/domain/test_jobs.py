"""Background jobs: the e-mail on create and task processing, with a real Redis, a real arq
worker and a local SMTP sink; and the same flows in process (the embedded default)."""

from __future__ import annotations

import logging

import pytest
from arq.jobs import Job
from arq.worker import create_worker

from taskapi.domain import outbox
from taskapi.domain.jobs import process_task
from taskapi.domain.relay import Relay
from taskapi.infra.redis.queue import deserialize_job
from taskapi.wiring import job_resources
from taskapi.worker_settings import build_worker_settings
from tests.conftest import create_account, redis_of, replaced, taskapi_records
from tests.services import redis_commands_during, until
from tests.smtp import smtp_sink

FAST = {"job_retry_base_seconds": 1}


async def run_worker_until_idle(settings) -> None:
    """A real arq worker, in this process, in burst mode: it stops when the queue is empty."""
    worker = create_worker(
        build_worker_settings(settings), burst=True, handle_signals=False, poll_delay=0.05
    )
    try:
        await worker.main()
    finally:
        await worker.close()


def settings_of(app):
    return app.extensions["taskapi"].settings


def worker_relay(app) -> Relay:
    """A relay as a worker runs one, on the app's database and Redis."""
    parts = app.extensions["taskapi"]
    return Relay(
        parts.db, parts.queue, parts.effects.publisher, poll_seconds=1, retention_seconds=60
    )


async def _create(client, account, **fields) -> dict:
    response = await client.post(
        "/api/tasks/", headers=account.headers, json={"title": "Write report", **fields}
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    return (await response.get_json())["data"]


async def _poll_status(client, account, url: str, wanted: str) -> dict:
    body: dict = {}

    async def reached() -> bool:
        nonlocal body
        response = await client.get(url, headers=account.headers)
        assert response.status_code == 200
        body = await response.get_json()
        return body["status"] == wanted

    await until(reached, f"job status {wanted}", 30)
    return body


# --- with Redis and a real arq worker ---------------------------------------------------------


async def test_create_sends_the_confirmation_email_through_smtp(make_apps):
    with smtp_sink() as sink:
        (app,) = await make_apps(1, smtp_url=sink.url)
        account = await create_account(app)
        task = await _create(app.test_client(), account, title="Buy milk")
        await run_worker_until_idle(settings_of(app))
        (mail,) = await sink.wait_for(1)
    assert mail.recipients == [account.email]
    assert mail.message["To"] == account.email
    assert mail.message["Subject"] == "Task Created: Buy milk"
    body = mail.message.get_content().strip()
    assert body == f"Your task 'Buy milk' (ID: {task['id']}) was created successfully."


async def test_a_create_drops_cached_lists_in_one_round_trip_and_its_email_comes_later(
    make_apps, redis_server
):
    (app,) = await make_apps(1)
    account = await create_account(app)
    client = app.test_client()
    await client.get("/api/tasks/", headers=account.headers)  # the list is now cached
    created = []

    async def create() -> None:
        created.append(await _create(client, account, title="Buy milk"))

    commands = await redis_commands_during(redis_server.url, create)
    # the gate's script (the token's revocation), then the three cache versions: two round
    # trips; the e-mail is in the outbox, for a worker's relay
    assert commands == ["EVALSHA", "MULTI", *["INCRBY"] * 3, "EXEC"]
    listed = await client.get("/api/tasks/", headers=account.headers)
    assert listed.headers["X-Cache"] == "MISS"
    assert [t["id"] for t in (await listed.get_json())["data"]] == [created[0]["id"]]
    with smtp_sink() as sink:
        await run_worker_until_idle(replaced(settings_of(app), smtp_url=sink.url))
        (mail,) = await sink.wait_for(1)
    assert mail.message["Subject"] == "Task Created: Buy milk"


async def test_the_creation_email_job_names_its_creator_and_request(make_apps):
    """The job a create queues says who asked (whose job status it is) and the request id its
    log lines carry."""
    (app,) = await make_apps(1)
    account = await create_account(app)
    response = await app.test_client().post(
        "/api/tasks/", headers=account.headers, json={"title": "t"}
    )
    assert response.status_code == 201
    state = app.extensions["taskapi"]
    async with redis_of(app) as redis:
        assert await redis.keys(b"arq:job:*") == []  # in the outbox until a relay runs
    await worker_relay(app).drain()
    async with redis_of(app) as redis:
        (key,) = await redis.keys(b"arq:job:*")
        job_id = key.decode().removeprefix("arq:job:")
        info = await Job(job_id, redis, _deserializer=deserialize_job).info()
    assert info is not None and info.function == "send_task_created_email"
    assert info.kwargs == {
        "requested_by": account.id,
        "request_id": response.headers["X-Request-ID"],
    }
    view = await state.queue.view(job_id)
    assert (view.status, view.requested_by) == ("queued", account.id)


async def test_email_is_retried_after_an_smtp_failure(make_apps, caplog):
    with smtp_sink(failures=1) as sink:
        (app,) = await make_apps(1, smtp_url=sink.url, **FAST)
        account = await create_account(app)
        await _create(app.test_client(), account)
        with (
            caplog.at_level(logging.WARNING, logger="taskapi.domain.jobs"),
            taskapi_records(caplog),
        ):
            await run_worker_until_idle(settings_of(app))
        delivered = await sink.wait_for(1)
    assert sink.handler.refused == 1
    assert len(delivered) == 1
    assert "failed (try 1)" in caplog.text


async def test_email_gives_up_after_max_tries_with_an_error_log(make_apps, caplog):
    with smtp_sink(failures=99) as sink:
        (app,) = await make_apps(1, smtp_url=sink.url, job_max_tries=2, **FAST)
        account = await create_account(app)
        await _create(app.test_client(), account)
        with caplog.at_level(logging.ERROR, logger="taskapi.domain.jobs"), taskapi_records(caplog):
            await run_worker_until_idle(settings_of(app))
    assert sink.handler.refused == 2
    assert sink.handler.delivered == []
    assert "giving up on the e-mail" in caplog.text


async def test_process_is_202_then_polled_to_complete(make_apps):
    (app,) = await make_apps(1)
    account = await create_account(app)
    client = app.test_client()
    task = await _create(client, account, description="raw data")
    url = f"/api/tasks/{task['id']}"
    await client.get(url, headers=account.headers)  # cache the detail before processing

    response = await client.post(f"{url}/process", headers=account.headers)
    assert response.status_code == 202
    body = await response.get_json()
    assert body["message"] == "Task processing has been queued."
    status_url = body["status_url"]
    assert status_url.endswith(f"/api/tasks/process/status/{body['job_id']}")
    queued = await (await client.get(status_url, headers=account.headers)).get_json()
    assert queued == {"job_id": body["job_id"], "status": "queued", "result": None}

    await run_worker_until_idle(settings_of(app))
    done = await _poll_status(client, account, status_url, "complete")
    assert done["result"]["new_description"] == "raw data [Processed]"
    after = await client.get(url, headers=account.headers)
    assert after.headers["X-Cache"] == "MISS"  # the job invalidated the cached detail
    data = (await after.get_json())["data"]
    assert (data["description"], data["status"]) == ("raw data [Processed]", "completed")


async def test_another_users_job_status_is_404_and_an_admin_may_see_it(make_apps):
    (app,) = await make_apps(1)
    owner, other = await create_account(app), await create_account(app)
    admin = await create_account(app, "admin")
    client = app.test_client()
    task = await _create(client, owner)
    status_url = (
        await (
            await client.post(f"/api/tasks/{task['id']}/process", headers=owner.headers)
        ).get_json()
    )["status_url"]
    assert (await client.get(status_url, headers=other.headers)).status_code == 404
    assert (await client.get(status_url, headers=admin.headers)).status_code == 200
    unknown = await client.get("/api/tasks/process/status/nope", headers=owner.headers)
    assert (unknown.status_code, (await unknown.get_json())["status"]) == (200, "not_found")


async def test_a_failed_job_reads_as_failed(make_apps):
    (app,) = await make_apps(1, smtp_url="smtp://127.0.0.1:1", job_max_tries=1)
    account = await create_account(app)
    task = await _create(app.test_client(), account)
    await run_worker_until_idle(settings_of(app))
    state = app.extensions["taskapi"]
    async with redis_of(app) as redis:
        keys = await redis.keys(b"arq:result:*")
    assert len(keys) == 1
    job_id = keys[0].decode().removeprefix("arq:result:")
    view = await state.queue.view(job_id)
    assert view.status == "failed"
    assert view.result == {"error": "SMTPConnectError"}  # the error's kind, never its text
    # ...and the failed job is this task's e-mail, whose arq result says it did not succeed
    async with redis_of(app) as redis:
        info = await Job(job_id, redis, _deserializer=deserialize_job).result_info()
    assert info is not None
    assert (info.function, list(info.args)) == ("send_task_created_email", [task["id"]])
    assert info.success is False


async def test_a_create_while_the_queue_is_down_keeps_its_email_in_the_outbox(
    make_apps, redis_server
):
    (app,) = await make_apps(1)
    account = await create_account(app)
    redis_server.stop()
    try:
        task = await _create(app.test_client(), account)
        async with app.extensions["taskapi"].db.connection() as connection:
            backlog = await outbox.backlog(connection)
        assert backlog.pending == 2  # the e-mail, and the cache versions it could not bump
    finally:
        redis_server.start()
    with smtp_sink() as sink:
        await run_worker_until_idle(replaced(settings_of(app), smtp_url=sink.url))
        (mail,) = await sink.wait_for(1)
    assert mail.message["Subject"] == f"Task Created: {task['title']}"


# --- the job functions themselves -------------------------------------------------------------


async def test_process_task_run_twice_appends_the_mark_once(make_apps):
    (app,) = await make_apps(1, backend="memory")
    account = await create_account(app)
    task = await _create(app.test_client(), account, description=None)
    state = app.extensions["taskapi"]
    ctx = {"taskapi": job_resources(state)}
    first = await process_task(ctx, task["id"], account.id)
    second = await process_task(ctx, task["id"], account.id)
    assert first["new_description"] == second["new_description"] == " [Processed]"


async def test_process_task_of_a_deleted_task_reports_it(make_apps):
    (app,) = await make_apps(1, backend="memory")
    state = app.extensions["taskapi"]
    ctx = {"taskapi": job_resources(state)}
    assert await process_task(ctx, 987654, 1) == {"status": "failed", "reason": "Task not found"}


# --- embedded: the same flows on the app's own loop -------------------------------------------


async def test_embedded_process_flow_needs_no_servers(make_apps):
    (app,) = await make_apps(1, backend="memory")
    owner, other = await create_account(app), await create_account(app)
    client = app.test_client()
    task = await _create(client, owner, description="d")
    response = await client.post(f"/api/tasks/{task['id']}/process", headers=owner.headers)
    assert response.status_code == 202
    status_url = (await response.get_json())["status_url"]
    done = await _poll_status(client, owner, status_url, "complete")
    assert done["result"]["new_description"] == "d [Processed]"
    assert (await client.get(status_url, headers=other.headers)).status_code == 404


async def test_processing_a_task_twice_through_the_api_marks_it_once(make_apps):
    (app,) = await make_apps(1, backend="memory")
    account = await create_account(app)
    client = app.test_client()
    task = await _create(client, account, description="d")
    url = f"/api/tasks/{task['id']}"
    for _ in range(2):
        response = await client.post(f"{url}/process", headers=account.headers)
        assert response.status_code == 202
        await _poll_status(client, account, (await response.get_json())["status_url"], "complete")
    data = (await (await client.get(url, headers=account.headers)).get_json())["data"]
    assert (data["description"], data["status"]) == ("d [Processed]", "completed")


async def test_embedded_email_goes_through_smtp_when_configured(make_apps):
    with smtp_sink() as sink:
        (app,) = await make_apps(1, backend="memory", smtp_url=sink.url)
        account = await create_account(app)
        await _create(app.test_client(), account, title="Embedded")
        (mail,) = await sink.wait_for(1)
    assert mail.message["Subject"] == "Task Created: Embedded"


@pytest.mark.parametrize("who", ["stranger", "nobody"])
async def test_process_of_someone_elses_or_a_missing_task(make_apps, who):
    (app,) = await make_apps(1, backend="memory")
    owner, stranger = await create_account(app), await create_account(app)
    client = app.test_client()
    task = await _create(client, owner)
    task_id = task["id"] if who == "stranger" else 424242
    response = await client.post(f"/api/tasks/{task_id}/process", headers=stranger.headers)
    assert response.status_code == (403 if who == "stranger" else 404)

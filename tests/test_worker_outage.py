"""The worker outlives its stores. Redis restarted under it, or started after it: the worker
(`arq worker.WorkerSettings`, a separate process) waits, logs one line when Redis goes and one
when it is back, and runs the jobs queued afterwards on its own. A database it cannot reach: the
job is tried again, and the outage logged once."""

from __future__ import annotations

import logging
import signal
import subprocess
import time

from arq.jobs import Job
from quart import Quart

from taskapi.infra.redis.queue import deserialize_job
from taskapi.settings import Settings
from tests.conftest import Account, create_account, redis_of, replaced, taskapi_records
from tests.domain.test_jobs import run_worker_until_idle, worker_relay
from tests.services import RedisServer, free_port, until
from tests.smtp import SmtpSink, smtp_sink
from tests.test_worker_settings import WorkerOutput, start_worker

DEADLINE_SECONDS = 30.0
# arq on its own gives up after conn_retries (5) times conn_retry_delay (1 s): an outage longer
# than that at start-up is one it would not survive
ARQ_OWN_RETRY_SECONDS = 6.0
GONE = "redis unavailable: "
BACK = "redis available again"


def _outage_lines(output: WorkerOutput) -> list[str]:
    return [
        line for line in output.text().splitlines() if "taskapi.infra.redis.worker_redis" in line
    ]


async def _a_job_runs(app: Quart, account: Account, sink: SmtpSink, title: str) -> None:
    """A create (once the API's own Redis breaker lets it through) queues its e-mail job, and
    the worker sends it."""
    client = app.test_client()

    async def created() -> bool:
        response = await client.post("/api/tasks/", headers=account.headers, json={"title": title})
        return response.status_code == 201

    await until(created, "a create to be queued", DEADLINE_SECONDS)
    (mail,) = await sink.wait_for(1, deadline=DEADLINE_SECONDS)
    assert mail.message["Subject"] == f"Task Created: {title}"


async def _redis_returns_and_a_job_runs(
    app: Quart,
    account: Account,
    sink: SmtpSink,
    worker: subprocess.Popen[bytes],
    output: WorkerOutput,
    redis_server: RedisServer,
    title: str,
) -> None:
    """The worker, still alive through the outage, runs a job once Redis is back, having
    logged one line when Redis went and one when it returned, and no traceback."""
    assert worker.poll() is None, output.text()[-3000:]
    redis_server.start()
    await _a_job_runs(app, account, sink, title)
    assert worker.poll() is None
    (gone, back) = _outage_lines(output)
    assert GONE in gone and back.endswith(BACK)
    assert "Traceback" not in output.text(), output.text()[-3000:]


async def test_a_worker_outlives_a_redis_restart(make_apps, redis_server):
    (app,) = await make_apps(1)
    settings: Settings = app.extensions["taskapi"].settings
    account = await create_account(app)
    with smtp_sink() as sink:
        worker = start_worker(settings, redis_server.url, sink.url)
        output = WorkerOutput(worker)
        try:
            await until(lambda: "Starting worker" in output.text(), "the worker to start", 30)
            redis_server.stop()
            await until(
                lambda: GONE in output.text() or worker.poll() is not None,
                "the worker to see Redis go",
                30,
            )
            await _redis_returns_and_a_job_runs(
                app, account, sink, worker, output, redis_server, "after the restart"
            )
        finally:
            worker.kill()
            worker.wait()


async def test_a_worker_started_before_redis_runs_jobs_once_it_starts(make_apps, redis_server):
    (app,) = await make_apps(1)
    settings: Settings = app.extensions["taskapi"].settings
    account = await create_account(app)
    redis_server.stop()
    with smtp_sink() as sink:
        worker = start_worker(settings, redis_server.url, sink.url)
        output = WorkerOutput(worker)
        try:
            await until(
                lambda: GONE in output.text() or worker.poll() is not None,
                "the worker to find Redis gone",
                30,
            )
            down_since = time.monotonic()
            await until(
                lambda: (
                    worker.poll() is not None
                    or time.monotonic() - down_since > ARQ_OWN_RETRY_SECONDS
                ),
                "the outage to outlast arq's own retries",
            )
            await _redis_returns_and_a_job_runs(
                app, account, sink, worker, output, redis_server, "after a late start"
            )
        finally:
            worker.kill()
            worker.wait()


async def test_a_job_that_finds_the_database_gone_is_retried_and_logged_once(make_apps, caplog):
    """A job meeting an unreachable database is tried again (arq's Retry, with backoff) up to
    TASKAPI_JOB_MAX_TRIES, and the outage is one log line, not a traceback per try."""
    (app,) = await make_apps(1)
    account = await create_account(app)
    created = await app.test_client().post(
        "/api/tasks/", headers=account.headers, json={"title": "while the database is down"}
    )
    assert created.status_code == 201
    await worker_relay(app).drain()  # the e-mail's job in arq, out of the outbox
    gone = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    worker_settings = replaced(
        app.extensions["taskapi"].settings,
        database_url=gone,
        job_max_tries=3,
        job_retry_base_seconds=0,
    )
    with taskapi_records(caplog), caplog.at_level(logging.WARNING, logger="taskapi"):
        await run_worker_until_idle(worker_settings)
    outage = [r.getMessage() for r in caplog.records if r.name == "taskapi.infra.db"]
    assert len(outage) == 1 and outage[0].startswith("database unavailable: "), outage
    async with redis_of(app) as redis:
        (key,) = await redis.keys(b"arq:result:*")
        job = Job(key.decode().removeprefix("arq:result:"), redis, _deserializer=deserialize_job)
        result = await job.result_info()
    assert result is not None and not result.success
    assert result.job_try == 3  # tried until TASKAPI_JOB_MAX_TRIES, then given up


async def test_a_worker_stopped_during_an_outage_exits_without_waiting_for_redis(
    make_apps, redis_server
):
    """SIGTERM while Redis is down: the worker stops retrying and exits (with an error: arq
    cannot remove its health-check key), rather than hanging until it is killed."""
    (app,) = await make_apps(1)
    settings: Settings = app.extensions["taskapi"].settings
    worker = start_worker(settings, redis_server.url, "")
    output = WorkerOutput(worker)
    try:
        await until(lambda: "Starting worker" in output.text(), "the worker to start", 30)
        redis_server.stop()
        await until(lambda: GONE in output.text(), "the worker to see Redis go", 30)
        worker.send_signal(signal.SIGTERM)
        try:
            await until(lambda: worker.poll() is not None, "the worker to exit", DEADLINE_SECONDS)
        except AssertionError as error:
            raise AssertionError(f"{error}; its output:\n{output.text()[-4000:]}") from None
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait()


async def test_a_worker_killed_mid_job_leaves_the_job_to_run_again(make_apps, redis_server):
    """SIGKILL while the e-mail is being sent (the first SMTP server holds its answer): the job
    stays in Redis, and a second worker runs it once the first one's claim has expired
    (`job_timeout` + arq's 10 s): the owner gets the e-mail from the second worker, once (the
    first may have got through too: delivery is at least once)."""
    (app,) = await make_apps(1)
    settings: Settings = app.extensions["taskapi"].settings
    account = await create_account(app)
    short = {"TASKAPI_JOB_TIMEOUT_SECONDS": "2"}
    with smtp_sink(hold=True) as held, smtp_sink() as sink:
        first = start_worker(settings, redis_server.url, held.url, **short)
        try:
            response = await app.test_client().post(
                "/api/tasks/", headers=account.headers, json={"title": "survives a kill"}
            )
            assert response.status_code == 201
            await until(held.handler.receiving.is_set, "the e-mail to be mid-send", 30)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        second = start_worker(settings, redis_server.url, sink.url, **short)
        try:
            (mail,) = await sink.wait_for(1, deadline=40)
        finally:
            second.terminate()
            second.wait()
    assert mail.message["Subject"] == "Task Created: survives a kill"
    assert len(sink.handler.delivered) == 1

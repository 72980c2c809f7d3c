"""The worker (`arq worker.WorkerSettings`, a separate process) outlives Redis: restarted under
it, or started before it, the worker waits, logs one line when Redis goes and one when it is
back, and runs the jobs queued afterwards on its own."""

from __future__ import annotations

import time

from quart import Quart

from taskapi.settings import Settings
from tests.conftest import Account, create_account
from tests.services import until
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
            assert worker.poll() is None, output.text()[-3000:]
            redis_server.start()
            await _a_job_runs(app, account, sink, "after the restart")
            assert worker.poll() is None
            (gone, back) = _outage_lines(output)
            assert GONE in gone and back.endswith(BACK)
            assert "Traceback" not in output.text(), output.text()[-3000:]
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
            assert worker.poll() is None, output.text()[-3000:]
            redis_server.start()
            await _a_job_runs(app, account, sink, "after a late start")
            assert worker.poll() is None
            (gone, back) = _outage_lines(output)
            assert GONE in gone and back.endswith(BACK)
            assert "Traceback" not in output.text(), output.text()[-3000:]
        finally:
            worker.kill()
            worker.wait()

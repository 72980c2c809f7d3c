"""The worker as operators run it (`arq worker.WorkerSettings`, a separate process): killed
mid-job it delivers the job again after a restart; on SIGTERM it finishes the job in hand."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from taskapi.settings import PROJECT_ROOT
from tests.conftest import create_account
from tests.services import free_port, until
from tests.smtp import smtp_sink

BIN = Path(sys.executable).parent
ARQ_WORKER = [str(BIN / "arq"), "worker.WorkerSettings"]
TASKAPI_WORKER = [str(BIN / "taskapi"), "worker"]


def start_worker(
    settings, redis_url: str, smtp_url: str, command: list[str] = ARQ_WORKER, **extra: str
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKAPI_", "DATABASE_URL"))}
    env.update(
        TASKAPI_ENV="testing",
        DATABASE_URL=settings.database_url,
        REDIS_URL=redis_url,
        TASKAPI_SMTP_URL=smtp_url,
        **extra,
    )
    return subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


class StalledSmtp:
    """A port that accepts TCP connections and never says a word: the job hangs on it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.sock.close()


async def _job_in_progress(app) -> bool:
    return bool(await app.extensions["taskapi"].redis.client.keys(b"arq:in-progress:*"))


async def test_a_worker_killed_mid_job_is_replaced_and_the_job_completes(make_apps, redis_server):
    (app,) = await make_apps(1)
    settings = app.extensions["taskapi"].settings
    account = await create_account(app)
    stalled = StalledSmtp()
    # job timeout 2 s: arq lets another worker take the job 12 s after the crash
    first = start_worker(settings, redis_server.url, stalled.url, TASKAPI_JOB_TIMEOUT_SECONDS="2")
    second = None
    try:
        created = await app.test_client().post(
            "/api/tasks/", headers=account.headers, json={"title": "survives a crash"}
        )
        assert created.status_code == 201
        await until(lambda: _job_in_progress(app), "the worker to start the job", 30)
        first.send_signal(signal.SIGKILL)
        first.wait()
        with smtp_sink() as sink:
            second = start_worker(
                settings, redis_server.url, sink.url, TASKAPI_JOB_TIMEOUT_SECONDS="2"
            )
            (mail,) = await sink.wait_for(1, deadline=60)
        assert mail.message["Subject"] == "Task Created: survives a crash"
    finally:
        stalled.close()
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


async def test_sigterm_lets_the_job_in_hand_finish(make_apps, redis_server):
    (app,) = await make_apps(1)
    settings = app.extensions["taskapi"].settings
    account = await create_account(app)
    with smtp_sink(hold=True) as sink:
        worker = start_worker(settings, redis_server.url, sink.url, TASKAPI_WORKER)
        try:
            created = await app.test_client().post(
                "/api/tasks/", headers=account.headers, json={"title": "graceful"}
            )
            assert created.status_code == 201
            await until(sink.handler.receiving.is_set, "the job to be sending its e-mail", 30)
            worker.send_signal(signal.SIGTERM)  # mid-job: the SMTP server has not answered
            sink.handler.release.set()
            assert worker.wait(timeout=60) == 0
            delivered = await sink.wait_for(1)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    output = worker.stdout.read().decode() if worker.stdout else ""
    assert len(delivered) == 1
    assert "wait complete ◆ 1 jobs complete ◆ 0 failed" in output, output[-2000:]
    assert "0 ongoing to cancel" in output, output[-2000:]

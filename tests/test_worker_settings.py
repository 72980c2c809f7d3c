"""The worker as operators run it (`arq worker.WorkerSettings`, a separate process): killed
mid-job it delivers the job again after a restart; on SIGTERM it finishes the job in hand."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from arq.jobs import Job, JobStatus

from taskapi.infra.redis.queue import deserialize_job
from taskapi.settings import PROJECT_ROOT
from tests.conftest import create_account, redis_of
from tests.services import free_port, until
from tests.smtp import smtp_sink

WEB_STACK = {"quart", "quart_schema", "quart_rate_limiter", "quart_jwt_extended", "flask"}
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


class WorkerOutput:
    """The worker's output, read line by line as it comes (a thread drains the pipe)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._reader.start()

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._lines.append(line.decode(errors="replace"))

    def text(self) -> str:
        return "".join(self._lines)


async def _job_in_progress(app) -> bool:
    async with redis_of(app) as redis:
        return bool(await redis.keys(b"arq:in-progress:*"))


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
    state = app.extensions["taskapi"]
    account = await create_account(app)
    with smtp_sink(hold=True) as sink:
        worker = start_worker(state.settings, redis_server.url, sink.url, TASKAPI_WORKER)
        output = WorkerOutput(worker)
        try:
            created = await app.test_client().post(
                "/api/tasks/", headers=account.headers, json={"title": "graceful"}
            )
            assert created.status_code == 201
            # in flight: the job's e-mail reached DATA, and the sink holds its answer
            await until(sink.handler.receiving.is_set, "the job to be sending its e-mail", 30)
            worker.send_signal(signal.SIGTERM)
            await until(lambda: "shutdown on SIGTERM" in output.text(), "the signal handler", 30)
            assert not sink.handler.delivered  # the job was still waiting when the signal landed
            sink.handler.release.set()
            assert worker.wait(timeout=60) == 0, output.text()[-2000:]
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    async with redis_of(app) as redis:
        results = await redis.keys(b"arq:result:*")
        assert len(results) == 1, "no result: the job was cancelled, not finished"
        (key,) = results
        job = Job(key.decode().removeprefix("arq:result:"), redis, _deserializer=deserialize_job)
        assert await job.status() == JobStatus.complete
        result = await job.result_info()
    assert result is not None and result.function == "send_task_created_email"
    assert result.success, result.result
    assert result.result["status"] == "sent"
    assert len(sink.handler.delivered) == 1


def test_the_worker_settings_load_no_web_stack_in_a_fresh_interpreter():
    """`arq worker.WorkerSettings` imports the domain and arq, never quart or a blueprint."""
    probe = (
        "import json, sys, worker; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('quart', 'flask', "
        "'taskapi')))))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKAPI_", "DATABASE_URL"))}
    env.update(TASKAPI_ENV="testing", REDIS_URL="redis://127.0.0.1:9/0")
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = json.loads(done.stdout)
    assert "taskapi.domain.jobs" in loaded  # the probe saw the worker's own imports
    web = [m for m in loaded if m.split(".")[0] in WEB_STACK]
    ours = [
        m for m in loaded if m.startswith(("taskapi.http", "taskapi.blueprints", "taskapi.app"))
    ]
    assert web == []
    assert ours == []

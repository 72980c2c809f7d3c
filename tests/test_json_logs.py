"""TASKAPI_LOG_FORMAT=json, on the processes as operators run them: hypercorn serving the app
with the package's hypercorn.toml, and `arq worker.WorkerSettings --custom-log-dict
worker.LOG_CONFIG`. Every line either writes, on stdout or stderr, is one JSON object: hypercorn's
own and its access lines (with the request id), arq's, a failing job's traceback, an exception
nothing caught."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from taskapi.settings import PROJECT_ROOT
from tests.deployment import BIN, ApiInstance, production_env
from tests.services import free_port, poll, running_redis

WORKER = [str(BIN / "arq"), "worker.WorkerSettings", "--custom-log-dict", "worker.LOG_CONFIG"]
FIELDS = {"time", "level", "logger", "request_id", "message"}


def json_lines(*paths: Path) -> list[dict[str, Any]]:
    """Every line of these files as a JSON object (a line that is not one fails the test)."""
    entries = []
    for path in paths:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            try:
                entry = json.loads(line)
            except ValueError:
                raise AssertionError(f"{path.name}:{number} is not JSON: {line!r}") from None
            assert isinstance(entry, dict) and set(entry) >= FIELDS, (path.name, number, line)
            entries.append(entry)
    return entries


def start_worker(env: dict[str, str], directory: Path) -> subprocess.Popen[bytes]:
    with (directory / "worker.out").open("ab") as out, (directory / "worker.err").open("ab") as err:
        return subprocess.Popen(WORKER, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=err)


def call(
    port: int, method: str, path: str, body: Any = None, token: str = ""
) -> tuple[int, dict[str, str], Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    connection.request(method, path, None if body is None else json.dumps(body), headers)
    response = connection.getresponse()
    raw = response.read()
    headers = {name.lower(): value for name, value in response.getheaders()}
    return response.status, headers, json.loads(raw) if raw else None


def test_a_request_and_the_job_it_queues_log_json_lines_with_its_request_id(
    postgres_server, redis_server, tmp_path
):
    """A create through hypercorn queues an e-mail the worker cannot send (its SMTP port is
    closed, one try allowed): the access line carries the request's id, and so does the
    worker's line about the failed job; arq's line about it has the traceback, as JSON."""
    redis_server.flush()
    database_url = postgres_server.create_database(f"jsonlogs_{int(time.time() * 1000) % 10**9}")
    env = production_env(
        database_url,
        redis_server.url,
        TASKAPI_LOG_FORMAT="json",
        TASKAPI_SMTP_URL=f"smtp://127.0.0.1:{free_port()}",  # nothing listens there
        TASKAPI_JOB_MAX_TRIES="1",
    )
    migrate = subprocess.run(
        [str(BIN / "taskapi"), "db", "upgrade"], cwd=PROJECT_ROOT, env=env, capture_output=True
    )
    assert migrate.returncode == 0, migrate.stderr.decode()[-2000:]
    api = ApiInstance(free_port(), env, tmp_path / "api.log")  # its stdout and stderr
    worker = start_worker(env, tmp_path)
    worker_logs = (tmp_path / "worker.out", tmp_path / "worker.err")
    try:
        api.start()
        account = {"username": "logger", "email": "log@example.com", "password": "json-lines-1"}
        assert call(api.port, "POST", "/auth/register", account)[0] == 201
        token = call(api.port, "POST", "/auth/login", account)[2]["access_token"]
        status, headers, _ = call(api.port, "POST", "/api/tasks/", {"title": "t"}, token)
        assert status == 201
        request_id = headers["x-request-id"]
        assert call(api.port, "GET", "/api/tasks/999999", None, token)[0] == 404

        def failed_in_arq() -> bool:
            return any(
                e["logger"].startswith("arq") and "exception" in e for e in json_lines(*worker_logs)
            )

        poll(failed_in_arq, "the worker to fail the e-mail job", 60)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        assert api.stop() == 0
    api_lines = json_lines(api.log)
    (access,) = [
        e
        for e in api_lines
        if e["logger"] == "hypercorn.access"
        and e["method"] == "POST"
        and e["path"] == "/api/tasks/"
    ]
    assert (access["request_id"], access["status"]) == (request_id, 201)
    assert request_id in access["message"]  # the text line hypercorn.toml's format makes
    assert any(e["logger"] == "hypercorn.error" and "Running on" in e["message"] for e in api_lines)
    worker_lines = json_lines(*worker_logs)
    ours = [e for e in worker_lines if e["request_id"] == request_id]
    assert any("failed (try 1)" in e["message"] for e in ours), ours
    (traceback,) = [e for e in worker_lines if "exception" in e]
    assert traceback["logger"] == "arq.worker" and traceback["level"] == "ERROR"
    assert traceback["exception"].startswith("Traceback (most recent call last):")
    assert "send_task_created_email" in traceback["message"]
    assert any(
        e["logger"] == "arq.worker" and "Starting worker" in e["message"] for e in worker_lines
    )


def test_an_exception_nothing_caught_is_one_json_line(shared_settings, tmp_path):
    """The worker stopped while its Redis is gone exits with an error nothing catches (arq
    cannot remove its health-check key): that traceback too is a JSON line, like the rest."""
    with running_redis() as own_redis:
        env = production_env(shared_settings.database_url, own_redis.url, TASKAPI_LOG_FORMAT="json")
        worker = start_worker(env, tmp_path)
        logs = (tmp_path / "worker.out", tmp_path / "worker.err")
        try:
            poll(lambda: "Starting worker" in logs[1].read_text(), "the worker to start", 30)
            own_redis.stop()
            poll(lambda: "redis unavailable" in logs[1].read_text(), "the worker to see it", 30)
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(timeout=60)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert code != 0
    lines = json_lines(*logs)
    (uncaught,) = [e for e in lines if e["logger"] == "taskapi.uncaught"]
    assert uncaught["level"] == "CRITICAL"
    assert uncaught["exception"].startswith("Traceback (most recent call last):")
    assert "ConnectionError" in uncaught["exception"].splitlines()[-1]


def test_taskapi_serve_writes_json_lines_too(shared_settings, tmp_path):
    """`taskapi serve` (hypercorn in its own process, on the same hypercorn.toml): its own
    "serving on" line and hypercorn's are JSON lines as well."""
    port = free_port()
    env = production_env(shared_settings.database_url, "", TASKAPI_LOG_FORMAT="json")
    env.update(TASKAPI_ENV="testing", PORT=str(port))
    with (tmp_path / "serve.out").open("ab") as out, (tmp_path / "serve.err").open("ab") as err:
        server = subprocess.Popen(
            [str(BIN / "taskapi"), "serve"], cwd=PROJECT_ROOT, env=env, stdout=out, stderr=err
        )
    try:
        poll(lambda: call(port, "GET", "/health")[0] == 200 if _listening(port) else False, "serve")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    lines = json_lines(tmp_path / "serve.out", tmp_path / "serve.err")
    assert any(e["logger"] == "taskapi.cli" and "serving on" in e["message"] for e in lines)
    assert any(e["logger"] == "hypercorn.access" and e["path"] == "/health" for e in lines)


def _listening(port: int) -> bool:
    try:
        http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
    except OSError:
        return False
    return True


def test_the_worker_unit_runs_the_command_tested_here():
    """The systemd unit starts the worker exactly as these tests do, the log option included."""
    unit = (PROJECT_ROOT / "config/systemd/taskapi-worker.service").read_text()
    (start,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    assert start.removeprefix("ExecStart=").split() == [
        "/opt/taskapi/.venv/bin/arq",
        *WORKER[1:],
    ]


def test_arq_without_the_option_keeps_its_own_lines_once(shared_settings, redis_server, tmp_path):
    """`arq worker.WorkerSettings` alone: arq's own handler writes its lines (its text format)
    and the root handler does not write them again; taskapi's lines are JSON still."""
    env = production_env(shared_settings.database_url, redis_server.url, TASKAPI_LOG_FORMAT="json")
    with (tmp_path / "worker.out").open("ab") as out, (tmp_path / "worker.err").open("ab") as err:
        worker = subprocess.Popen(WORKER[:2], cwd=PROJECT_ROOT, env=env, stdout=out, stderr=err)
    err_log = tmp_path / "worker.err"
    try:
        poll(lambda: "Starting worker" in err_log.read_text(), "the worker to start", 30)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    starting = [line for line in err_log.read_text().splitlines() if "Starting worker" in line]
    assert len(starting) == 1 and not starting[0].startswith("{"), starting

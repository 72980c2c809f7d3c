"""End to end through the production layout: nginx (TLS) → two single-worker hypercorn
instances → PostgreSQL and Redis, with an arq worker; plus the systemd units' verification."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from taskapi.settings import PROJECT_ROOT
from tests.deployment import (
    BIN,
    SERVER_NAME,
    ApiInstance,
    HttpsClient,
    Nginx,
    nginx_binary,
    production_env,
    site_values,
    unverified_tls,
    write_main_config,
)
from tests.services import free_port, poll, unavailable


@pytest.fixture
def stack(postgres_server, redis_server, tmp_path):
    """Migrated database, two API instances, one worker and nginx, as the units run them."""
    redis_server.flush()
    database_url = postgres_server.create_database(f"e2e_{int(time.time() * 1000) % 10**9}")
    env = production_env(
        database_url,
        redis_server.url,
        TASKAPI_RATELIMIT_DEFAULT="100000 per minute",
        TASKAPI_RATELIMIT_LOGIN="5 per minute",
        TASKAPI_WORKER_METRICS_PORT=str(free_port()),
    )
    migrate = subprocess.run(
        [str(BIN / "taskapi"), "db", "upgrade"], cwd=PROJECT_ROOT, env=env, capture_output=True
    )
    assert migrate.returncode == 0, migrate.stderr.decode()[-2000:]
    instances = [ApiInstance(free_port(), env, tmp_path / f"api{i}.log") for i in (1, 2)]
    worker = None
    nginx = None
    try:
        for instance in instances:
            instance.start()
        with (tmp_path / "worker.log").open("ab") as log:
            worker = subprocess.Popen(
                [str(BIN / "arq"), "worker.WorkerSettings"],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        nginx = Nginx.start(tmp_path / "nginx", [i.port for i in instances], "1m")
        yield instances, nginx
    finally:
        if nginx is not None:
            nginx.stop()
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=60)
        for instance in instances:
            instance.stop()


def _register_and_login(client: HttpsClient, name: str) -> str:
    body = {"username": name, "email": f"{name}@example.com", "password": "e2e-password"}
    assert client.request("POST", "/auth/register", body)[0] == 201
    status, _, tokens = client.request("POST", "/auth/login", body)
    assert status == 200
    return tokens["access_token"]


def test_plain_http_redirects_to_https(stack):
    _, nginx = stack
    connection = http.client.HTTPConnection("127.0.0.1", nginx.http_port, timeout=5)
    connection.request("GET", "/api/tasks/?status=pending", headers={"Host": "localhost"})
    response = connection.getresponse()
    assert response.status == 301
    location = response.getheader("Location")
    assert location == f"https://localhost:{nginx.https_port}/api/tasks/?status=pending"


def _bytes_answered(port: int, request: bytes, server_name: str | None = "") -> bytes:
    """Everything nginx sends back to one raw request before it closes the connection, over
    plain TCP, or over TLS naming `server_name` (None: no SNI) when it is not ""."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        stream: socket.socket = raw
        if server_name != "":
            stream = unverified_tls().wrap_socket(raw, server_hostname=server_name)
        stream.sendall(request)
        received = b""
        while chunk := stream.recv(65536):
            received += chunk
        return received


def test_only_the_server_name_is_served(stack):
    """Another Host, or none, is closed with no answer (so no Location is built from it); a
    TLS handshake naming another server, or none, is refused; the server's name works."""
    _, nginx = stack
    client = HttpsClient(nginx.https_port)
    token = _register_and_login(client, "dave")
    post = (
        f"POST /api/tasks/ HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 13\r\nConnection: close\r\n\r\n"
        '{"title":"t"}'
    ).encode()
    for request in (post, b"GET /health HTTP/1.0\r\n\r\n"):
        assert _bytes_answered(nginx.http_port, request) == b""
        assert _bytes_answered(nginx.https_port, request, SERVER_NAME) == b""
    for server_name in ("evil.example", None):
        with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
            _bytes_answered(nginx.https_port, b"GET /health HTTP/1.0\r\n\r\n", server_name)

    status, _, listed = client.request("GET", "/api/tasks/", None, token)
    assert (status, listed["data"]) == (200, [])  # the POSTs never reached the API
    assert client.request("GET", "/health")[0] == 200
    redirect = _bytes_answered(
        nginx.http_port,
        f"GET / HTTP/1.1\r\nHost: {SERVER_NAME}\r\nConnection: close\r\n\r\n".encode(),
    )
    assert redirect.startswith(b"HTTP/1.1 301")


NOT_FOUND = {
    "status": "error",
    "error": {"message": "The requested URL was not found on the server.", "code": "not_found"},
}


def _plain_get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_metrics_are_scraped_from_each_process_never_through_nginx(stack):
    """nginx answers /metrics 404 itself (the envelope, however the path is spelled), so the
    loopback address it connects from never opens them; each instance and the worker serve
    theirs on their own ports to a loopback peer."""
    instances, nginx = stack
    client = HttpsClient(nginx.https_port)
    for path in ("/metrics", "/%6Detrics", "//metrics", "/metrics?x=1", "/metrics/"):
        status, headers, body = client.request("GET", path)
        assert (status, body) == (404, NOT_FOUND), path
        assert headers["content-type"].startswith("application/json"), path
    for instance in instances:
        status, text = _plain_get(instance.port, "/metrics")
        assert status == 200 and "# TYPE taskapi_http_requests_total counter" in text
    worker_port = int(instances[0].env["TASKAPI_WORKER_METRICS_PORT"])

    def worker_serves() -> bool:
        try:
            status, text = _plain_get(worker_port, "/metrics")
        except OSError:
            return False
        return status == 200 and "taskapi_jobs_started_total" in text

    poll(worker_serves, "the worker's metrics", 30)


def test_the_whole_flow_through_https(stack):
    _, nginx = stack
    client = HttpsClient(nginx.https_port)
    token = _register_and_login(client, "alice")

    status, headers, created = client.request(
        "POST", "/api/tasks/", {"title": "deploy", "description": "e2e"}, token
    )
    assert status == 201
    task_id = created["data"]["id"]
    assert headers["location"] == f"https://localhost:{nginx.https_port}/api/tasks/{task_id}"

    status, _, queued = client.request("POST", f"/api/tasks/{task_id}/process", None, token)
    assert status == 202
    status_path = queued["status_url"].split(str(nginx.https_port), 1)[1]
    assert queued["status_url"].startswith("https://")

    def complete() -> bool:
        return client.request("GET", status_path, None, token)[2]["status"] == "complete"

    poll(complete, "the worker to process the task", 30)
    status, headers, listed = client.request("GET", "/api/tasks/", None, token)
    assert status == 200
    assert listed["data"][0]["description"] == "e2e [Processed]"
    assert listed["data"][0]["status"] == "completed"

    # security headers: nginx's and the app's
    assert headers["strict-transport-security"].startswith("max-age=")
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    assert len(headers["x-request-id"]) == 32  # nginx's $request_id, passed and echoed

    assert client.request("POST", "/auth/logout", None, token)[0] == 204
    assert client.request("GET", "/api/tasks/", None, token)[0] == 401


def test_rate_limit_is_shared_and_keyed_by_the_address_nginx_saw(stack):
    _, nginx = stack
    attempts = []
    for i in range(6):  # round robin: both instances answer; a spoofed XFF changes nothing
        client = HttpsClient(nginx.https_port)  # a new connection each time
        attempts.append(
            client.request(
                "POST",
                "/auth/login",
                {"username": "nobody", "password": "wrong-password"},
                headers={"X-Forwarded-For": f"203.0.113.{i}"},
            )
        )
    assert [status for status, _, _ in attempts] == [401] * 5 + [429]
    assert int(attempts[-1][1]["retry-after"]) >= 1


def test_cache_invalidation_crosses_instances(stack):
    _, nginx = stack
    client = HttpsClient(nginx.https_port)
    token = _register_and_login(client, "bob")
    task_id = client.request("POST", "/api/tasks/", {"title": "v1"}, token)[2]["data"]["id"]
    caches = [
        client.request("GET", f"/api/tasks/{task_id}", None, token)[1]["x-cache"] for _ in range(4)
    ]
    assert caches[0] == "MISS" and caches[1:] == ["HIT"] * 3  # both instances, one cache
    assert client.request("PATCH", f"/api/tasks/{task_id}", {"title": "v2"}, token)[0] == 200
    titles = [
        client.request("GET", f"/api/tasks/{task_id}", None, token)[2]["data"]["title"]
        for _ in range(4)
    ]
    assert titles == ["v2"] * 4


async def test_a_rolling_restart_loses_no_request(stack):
    instances, nginx = stack
    setup = HttpsClient(nginx.https_port)
    token = _register_and_login(setup, "carol")
    task_id = setup.request("POST", "/api/tasks/", {"title": "steady"}, token)[2]["data"]["id"]
    stop = threading.Event()
    outcomes: list[object] = []

    def load() -> None:
        client = HttpsClient(nginx.https_port)
        paths = [f"/api/tasks/{task_id}", "/api/tasks/?limit=5", "/health"]
        while not stop.is_set():
            for path in paths:
                try:
                    status, _, body = client.request("GET", path, None, token)
                    outcomes.append(status if status == 200 else (status, str(body)[:200]))
                except Exception as error:  # a lost request: recorded, asserted below
                    outcomes.append(repr(error))

    loaders = [threading.Thread(target=load) for _ in range(4)]
    for thread in loaders:
        thread.start()
    try:
        for instance in instances:  # TERM one, bring it back, then the other
            await asyncio.to_thread(lambda i=instance: (i.stop(), i.start()))
    finally:
        stop.set()
        for thread in loaders:
            thread.join(timeout=60)
    failures = [o for o in outcomes if o != 200]
    assert len(outcomes) > 50
    assert failures == [], sorted({repr(f) for f in failures})[:5]


def test_the_readmes_envsubst_command_gives_a_config_nginx_accepts(tmp_path):
    """The README's own command (its variable list) fills in every placeholder of the site and
    leaves nginx's variables alone; `nginx -t` accepts the result."""
    envsubst = shutil.which("envsubst")
    if envsubst is None:
        unavailable("envsubst is not installed (apt-get install gettext-base)")
    readme = (PROJECT_ROOT / "README.md").read_text()
    names = re.search(r"envsubst '([^']+)' \\\n  < config/nginx/taskapi\.conf", readme)
    assert names is not None, "the README's envsubst command"
    values = site_values(tmp_path, free_port(), free_port(), [free_port(), free_port()], "1m")
    site = subprocess.run(
        [str(envsubst), names.group(1)],
        input=(PROJECT_ROOT / "config/nginx/taskapi.conf").read_text(),
        env={**values, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "${TASKAPI_" not in site
    assert "$request_uri" in site and "$host" in site  # nginx's own variables survive
    (tmp_path / "taskapi.conf").write_text(site)
    write_main_config(tmp_path, tmp_path / "taskapi.conf")
    checked = subprocess.run(
        [nginx_binary(), "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr


def test_the_services_run_under_the_units_system_call_filters(
    postgres_server, redis_server, tmp_path
):
    """SystemCallFilter=@system-service and MemoryDenyWriteExecute=yes, as systemd would install
    them (tests/unit_filters.py), on the migration, the API (hypercorn with uvloop, asyncpg,
    argon2, Redis) and the worker (arq): a whole flow works, jobs included."""
    if shutil.which("systemd-analyze") is None:
        unavailable("systemd-analyze is not installed (apt-get install systemd)")
    confined = (sys.executable, "-m", "tests.unit_filters")

    def confined_python(code: str) -> subprocess.CompletedProcess[str]:
        command = [*confined, sys.executable, "-c", code]
        return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)

    # the filters are in force: a call outside the group kills, W+X memory is refused
    assert confined_python("import os; os.chroot('/')").returncode == -signal.SIGSYS
    writable_code = "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC)"
    assert "PermissionError" in confined_python(writable_code).stderr

    redis_server.flush()
    database_url = postgres_server.create_database(f"confined_{int(time.time() * 1000) % 10**9}")
    env = production_env(database_url, redis_server.url)
    migrate = subprocess.run(
        [*confined, str(BIN / "taskapi"), "db", "upgrade"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
    )
    assert migrate.returncode == 0, migrate.stderr.decode()[-2000:]
    api = ApiInstance(free_port(), env, tmp_path / "api.log", wrapper=confined)
    worker = None
    try:
        api.start()
        with (tmp_path / "worker.log").open("ab") as log:
            worker = subprocess.Popen(
                [*confined, str(BIN / "arq"), "worker.WorkerSettings"],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        assert api.process is not None
        status = Path(f"/proc/{api.process.pid}/status").read_text()
        assert "Seccomp_filters:\t2" in status, status
        _run_a_flow_with_a_job(api.port)
        assert api.process.poll() is None and worker.poll() is None
    finally:
        if worker is not None:
            worker.terminate()
            assert worker.wait(timeout=60) == 0, (tmp_path / "worker.log").read_text()[-3000:]
        assert api.stop() == 0, (tmp_path / "api.log").read_text()[-3000:]


def _run_a_flow_with_a_job(port: int) -> None:
    """Register, log in, create a task, have the worker process it, log out."""

    def call(method: str, path: str, body: object = None, token: str = "") -> tuple[int, dict]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body)
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else {}

    account = {"username": "confined", "email": "c@example.com", "password": "e2e-password"}
    assert call("POST", "/auth/register", account)[0] == 201
    status, tokens = call("POST", "/auth/login", account)
    assert status == 200
    token = tokens["access_token"]
    status, created = call("POST", "/api/tasks/", {"title": "t", "description": "d"}, token)
    assert status == 201
    task_id = created["data"]["id"]
    status, queued = call("POST", f"/api/tasks/{task_id}/process", None, token)
    assert status == 202
    job_path = "/api/tasks/process/status/" + queued["job_id"]
    poll(lambda: call("GET", job_path, None, token)[1]["status"] == "complete", "the job", 30)
    assert call("GET", f"/api/tasks/{task_id}", None, token)[1]["data"]["status"] == "completed"
    assert call("GET", "/health/ready")[1]["checks"] == {
        "database": "ok",
        "redis": "ok",
        "outbox": "ok",
    }
    assert call("POST", "/auth/logout", None, token)[0] == 204


def test_systemd_units_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        unavailable("systemd-analyze is not installed (apt-get install systemd)")
    units = []
    for unit in sorted((PROJECT_ROOT / "config/systemd").glob("*.service")):
        text = unit.read_text().replace("/opt/taskapi", str(PROJECT_ROOT))
        name = unit.name.replace("@.service", "@8001.service")
        (tmp_path / name).write_text(text)
        units.append(str(tmp_path / name))
    result = subprocess.run(
        [analyze, "verify", "--man=no", *units], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr

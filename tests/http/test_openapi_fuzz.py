"""Property-based testing of every documented operation with Schemathesis, against a real
hypercorn serving the app on PostgreSQL and Redis: no 5xx, every status documented, every body
and header as documented, the right content types. `make fuzz` runs it longer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskapi.settings import PROJECT_ROOT
from tests.services import free_port, poll

BIN = Path(sys.executable).parent
EXAMPLES = int(os.environ.get("TASKAPI_FUZZ_EXAMPLES", "25"))
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
)


def _call(base: str, method: str, path: str, body: dict | None = None, token: str = "") -> dict:
    request = urllib.request.Request(
        base + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {token}"} if token else {}),
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


@pytest.fixture
def served_api(shared_settings, redis_server, tmp_path) -> Iterator[str]:
    """hypercorn serving the app (PostgreSQL + Redis), with rate limits too large to refuse
    anything, so every limited answer carries its rate-limit fields and they are checked
    against the document; its base URL."""
    redis_server.flush()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKAPI_", "DATABASE_URL"))}
    env.update(
        TASKAPI_ENV="testing",
        DATABASE_URL=shared_settings.database_url,
        REDIS_URL=redis_server.url,
        TASKAPI_RATELIMIT_ENABLED="1",
        TASKAPI_RATELIMIT_DEFAULT="1000000 per hour;100000 per minute",
        TASKAPI_RATELIMIT_LOGIN="100000 per minute",
        TASKAPI_RATELIMIT_LOGIN_FAILURES_PER_ADDRESS="100000 per minute",
        TASKAPI_RATELIMIT_LOGIN_FAILURES_PER_ACCOUNT="100000 per minute",
    )
    log = open(tmp_path / "hypercorn.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [str(BIN / "hypercorn"), "--bind", f"127.0.0.1:{port}", "asgi:app"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        if server.poll() is not None:
            raise RuntimeError((tmp_path / "hypercorn.log").read_text()[-3000:])
        try:
            return _call(base, "GET", "/health") == {"status": "ok"}
        except OSError:
            return False

    try:
        poll(answering, "hypercorn to serve /health")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_every_operation_conforms_to_the_document(served_api, tmp_path):
    base = served_api
    account = {"username": "fuzzer", "email": "fuzzer@example.com", "password": "fuzz-password"}
    _call(base, "POST", "/auth/register", account)
    tokens = _call(base, "POST", "/auth/login", account)
    token = tokens["access_token"]
    for i in range(3):  # some tasks of the fuzzer's own, so ids can hit
        _call(base, "POST", "/api/tasks/", {"title": f"seed {i}"}, token)
    common = [
        f"{base}/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        os.environ.get("TASKAPI_FUZZ_SEED", "20261124"),
        "--no-color",
        "--request-timeout",
        "10",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    access = ["--header", f"Authorization: Bearer {token}"]
    refresh = ["--header", f"Authorization: Bearer {tokens['refresh_token']}"]
    # /auth/refresh takes the refresh token; logout would revoke the token the rest of the run
    # needs, so it runs last
    runs = [
        [*access, "--exclude-path", "/auth/logout", "--exclude-path", "/auth/refresh"],
        [*refresh, "--include-path", "/auth/refresh"],
        [*access, "--include-path", "/auth/logout"],
    ]
    for selection in runs:
        result = subprocess.run(
            [str(BIN / "schemathesis"), "run", *common, *selection],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]

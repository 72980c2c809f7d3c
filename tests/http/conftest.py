"""A real server for the tests that speak to one over the network: hypercorn serving the app
on the suite's PostgreSQL and Redis, with rate limits too large to refuse anything, so every
limited answer carries its rate-limit fields (and the fuzzer checks them against the
document)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskapi.settings import PROJECT_ROOT
from tests.http import fuzz
from tests.services import free_port, poll

BIN = Path(sys.executable).parent


def server_environment(database_url: str, redis_url: str) -> dict[str, str]:
    """The environment of a served app (and of its worker): testing, these stores, limits too
    large to refuse anything."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKAPI_", "DATABASE_URL"))}
    env.update(
        TASKAPI_ENV="testing",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        TASKAPI_RATELIMIT_ENABLED="1",
        TASKAPI_RATELIMIT_DEFAULT="1000000 per hour;100000 per minute",
        TASKAPI_RATELIMIT_LOGIN="100000 per minute",
        TASKAPI_RATELIMIT_LOGIN_FAILURES_PER_ADDRESS="100000 per minute",
        TASKAPI_RATELIMIT_LOGIN_FAILURES_PER_ACCOUNT="100000 per minute",
    )
    return env


@pytest.fixture
def served_api(shared_settings, redis_server, tmp_path) -> Iterator[str]:
    """hypercorn serving the app (PostgreSQL + Redis); its base URL."""
    redis_server.flush()
    port = free_port()
    log = open(tmp_path / "hypercorn.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [str(BIN / "hypercorn"), "--bind", f"127.0.0.1:{port}", "asgi:app"],
        cwd=PROJECT_ROOT,
        env=server_environment(shared_settings.database_url, redis_server.url),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        if server.poll() is not None:
            raise RuntimeError((tmp_path / "hypercorn.log").read_text()[-3000:])
        try:
            return fuzz.call(base, "GET", "/health") == {"status": "ok"}
        except OSError:
            return False

    try:
        poll(answering, "hypercorn to serve /health")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()

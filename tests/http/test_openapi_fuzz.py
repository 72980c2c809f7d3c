"""Property-based testing of every documented operation with Schemathesis and every one of its
checks, against a real hypercorn serving the app on PostgreSQL and Redis: no 5xx, every status,
body, header and content type the documented one, schema-valid requests accepted and invalid
ones refused. `make fuzz` runs it longer (tests/http/fuzz.py runs it against any server)."""

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
EXAMPLES = int(os.environ.get("TASKAPI_FUZZ_EXAMPLES", "25"))


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


def test_every_operation_conforms_to_the_document(served_api):
    tokens = fuzz.tokens_for(served_api, "fuzzer", "fuzz-password")
    seed = int(os.environ.get("TASKAPI_FUZZ_SEED", fuzz.SEED))
    failed = fuzz.run(served_api, tokens, EXAMPLES, seed)
    assert not failed, "\n".join(failed)

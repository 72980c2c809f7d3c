"""Every entry point, run as an operator runs it, refuses a bad setting: non-zero exit, one line
naming the variable, and nothing that says it is serving."""

from __future__ import annotations

import http.client
import os
import secrets
import signal
import subprocess
from pathlib import Path

import pytest

from taskapi.settings import PROJECT_ROOT
from tests.deployment import BIN
from tests.services import free_port, poll

ENTRY_POINTS = {
    "taskapi serve": [str(BIN / "taskapi"), "serve"],
    "taskapi worker": [str(BIN / "taskapi"), "worker"],
    "arq": [str(BIN / "arq"), "worker.WorkerSettings"],
    "hypercorn": [str(BIN / "hypercorn"), "--config", "taskapi/config/hypercorn.toml", "asgi:app"],
}
BAD_VALUES = {
    "TASKAPI_TRUSTED_PROXIES": "garbage",
    "TASKAPI_RATELIMIT_DEFAULT": "often",
    "TASKAPI_CACHE_LIST_TTL": "-5",
    "DATABASE_URL": "mysql://taskapi:pw@db/taskapi",
    "TASKAPI_PROXY_HOPS": "1",
}


def clean_env(**values: str) -> dict[str, str]:
    """The caller's environment without any taskapi setting, plus `values`."""
    names = ("TASKAPI_", "DATABASE_URL", "REDIS_URL", "HOST", "PORT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(names)}
    return {**env, **values}


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("variable", BAD_VALUES)
@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_a_bad_setting_stops_every_entry_point_before_it_serves(entry_point, variable):
    port = str(free_port())
    env = clean_env(
        REDIS_URL="redis://127.0.0.1:1/0", PORT=port, **{variable: BAD_VALUES[variable]}
    )
    command = ENTRY_POINTS[entry_point]
    if entry_point == "hypercorn":
        command = [*command[:-1], "--bind", f"127.0.0.1:{port}", command[-1]]
    result = run(command, env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"configuration error: {variable}: " in lines[0]
    output = (result.stdout + result.stderr).lower()
    assert "serving" not in output and "running on" not in output


def test_serve_refuses_a_public_address_with_the_development_secret():
    result = run([str(BIN / "taskapi"), "serve"], clean_env(HOST="0.0.0.0", PORT=str(free_port())))
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: TASKAPI_JWT_SECRET_KEY: serving on HOST=0.0.0.0")
    assert "secrets.token_urlsafe(48)" in line
    assert "serving on http" not in result.stdout


@pytest.mark.parametrize("host", ["::", "192.168.1.20"])
def test_serve_refuses_other_public_addresses_with_a_weak_secret(host):
    env = clean_env(HOST=host, PORT=str(free_port()), TASKAPI_JWT_SECRET_KEY="a" * 40)
    result = run([str(BIN / "taskapi"), "serve"], env)
    assert result.returncode != 0
    assert result.stderr.startswith(f"Error: TASKAPI_JWT_SECRET_KEY: serving on HOST={host} ")


def test_serve_refuses_a_public_address_with_a_weak_accepted_key():
    env = clean_env(
        HOST="0.0.0.0",
        PORT=str(free_port()),
        TASKAPI_JWT_SECRET_KEY=secrets.token_urlsafe(48),
        TASKAPI_JWT_ACCEPTED_KEYS=f"{secrets.token_urlsafe(48)},{'a' * 40}",
    )
    result = run([str(BIN / "taskapi"), "serve"], env)
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: TASKAPI_JWT_ACCEPTED_KEYS (key 2): serving on HOST=0.0.0.0")
    assert "a" * 40 not in line


def test_serve_on_a_public_address_with_a_real_secret_serves_and_exits_cleanly(tmp_path: Path):
    port = free_port()
    env = clean_env(
        HOST="0.0.0.0",
        PORT=str(port),
        TASKAPI_JWT_SECRET_KEY=secrets.token_urlsafe(48),
        DATABASE_URL=f"sqlite:///{tmp_path / 'serve.db'}",
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(BIN / "taskapi"), "serve"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                raise RuntimeError(log.read_text())
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/health")
                return connection.getresponse().status == 200
            except OSError:
                return False

        poll(healthy, "taskapi serve on 0.0.0.0")
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    assert code == 0, log.read_text()

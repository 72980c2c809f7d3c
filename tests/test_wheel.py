"""The package on its own: built as a wheel, installed in a fresh virtualenv and run from
another directory, it reads its own configuration, migrates, refuses the secrets this repository
commits and serves. Offline: the wheel is built without isolation and installed without its
dependencies, which the fresh virtualenv borrows from the suite's own (a .pth file)."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from taskapi.settings import CONFIG_DIR, PROJECT_ROOT
from tests.services import free_port, poll
from tests.test_settings import committed_test_secret

COMMITTED_RULE = (
    "Error: configuration error: TASKAPI_JWT_SECRET_KEY: production refuses a secret that "
    "appears in a file of the repository"
)


@dataclass
class Installed:
    venv: Path
    elsewhere: Path  # an empty directory, far from the checkout: the commands' working directory

    def run(self, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / command[0]), *command[1:]],
            cwd=self.elsewhere,
            env=clean_env(**env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def clean_env(**values: str) -> dict[str, str]:
    names = ("TASKAPI_", "DATABASE_URL", "REDIS_URL", "HOST", "PORT", "PYTHONPATH", "VIRTUAL_ENV")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(names)}, **values}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy: building in place would leave build/ in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(PROJECT_ROOT / name, source / name)
    shutil.copytree(
        PROJECT_ROOT / "taskapi", source / "taskapi", ignore=shutil.ignore_patterns("__pycache__")
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    offline = ["--no-deps", "--no-index"]
    subprocess.run(
        [*pip, "wheel", *offline, "--no-build-isolation", "-w", str(root / "dist"), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (root / "dist").glob("taskapi-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [*pip, "--python", str(python), "install", *offline, str(wheel)],
        check=True,
        capture_output=True,
    )
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # the dependencies only: a path in a .pth file is appended to sys.path after the venv's own
    # site-packages, and the .pth files there (the checkout's editable taskapi) are not read
    (Path(purelib) / "taskapi-test-dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return Installed(venv, elsewhere)


def test_the_installed_package_is_the_one_that_runs(installed):
    result = installed.run("python", "-c", "import taskapi; print(taskapi.__file__)")
    assert result.returncode == 0, result.stderr
    imported = Path(result.stdout.strip())
    assert imported.is_relative_to(installed.venv), imported
    assert not imported.is_relative_to(PROJECT_ROOT)


def test_development_reads_the_packaged_configuration(installed):
    script = (
        "from taskapi.settings import load_settings; s = load_settings(); "
        "print(s.jwt_secret_key); print(s.database_url)"
    )
    result = installed.run("python", "-c", script)
    assert result.returncode == 0, result.stderr
    secret, database_url = result.stdout.split()
    assert secret == tomllib.loads((CONFIG_DIR / "development.toml").read_text())["jwt_secret_key"]
    # a relative SQLite path starts in the working directory outside a checkout
    assert database_url == f"sqlite+aiosqlite:///{installed.elsewhere}/instance/taskapi.db"


def test_production_refuses_the_committed_secrets_in_the_installed_package(installed):
    """The committed-value rule holds without a checkout: the package ships the values."""
    database = f"sqlite:///{installed.elsewhere / 'refused.db'}"
    value = committed_test_secret()
    variant = value[:-1] + ("x" if value[-1] != "x" else "y")
    for secret in (value, variant):
        result = installed.run(
            "taskapi",
            "db",
            "current",
            TASKAPI_ENV="production",
            DATABASE_URL=database,
            TASKAPI_JWT_SECRET_KEY=secret,
        )
        assert result.returncode != 0
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(COMMITTED_RULE), line
    example = installed.run(
        "taskapi",
        "db",
        "current",
        TASKAPI_ENV="production",
        DATABASE_URL=database,
        TASKAPI_JWT_SECRET_KEY="CHANGE-ME-to-at-least-32-random-characters",
    )
    assert "production refuses a secret that looks like a placeholder" in example.stderr


def _post(port: int, path: str, body: dict[str, str]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    return connection.getresponse().status


def _healthy(process: subprocess.Popen[bytes], log: Path, port: int) -> bool:
    if process.poll() is not None:
        raise RuntimeError(log.read_text())
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/health")
        return connection.getresponse().status == 200
    except OSError:
        return False


@pytest.mark.parametrize(
    "command",
    [
        ["taskapi", "serve"],
        ["python", "-m", "hypercorn", "--config", "{config}", "-b", "{bind}", "taskapi.asgi:app"],
    ],
    ids=["taskapi serve", "hypercorn"],
)
def test_the_installed_package_migrates_and_serves_in_production(installed, tmp_path, command):
    port = free_port()
    env = {
        "TASKAPI_ENV": "production",
        "DATABASE_URL": "sqlite:///instance/production.db",  # relative: in the working directory
        "TASKAPI_JWT_SECRET_KEY": secrets.token_urlsafe(32),
        "PORT": str(port),
    }
    migrated = installed.run("taskapi", "db", "upgrade", **env)
    assert migrated.returncode == 0, migrated.stderr
    assert (installed.elsewhere / "instance" / "production.db").is_file()
    config = installed.venv.glob("lib/python*/site-packages/taskapi/config/hypercorn.toml")
    values = {"config": str(next(config)), "bind": f"127.0.0.1:{port}"}
    argv = [str(installed.venv / "bin" / command[0])] + [a.format(**values) for a in command[1:]]
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            argv, cwd=installed.elsewhere, env=clean_env(**env), stdout=output, stderr=output
        )
    try:
        poll(lambda: _healthy(process, log, port), "the installed taskapi")
        account = {"username": "alice", "email": "alice@example.com", "password": "s3cret-pass"}
        assert _post(port, "/auth/register", account) in (201, 409)  # 409: the other command's
        assert _post(port, "/auth/login", {"username": "alice", "password": "s3cret-pass"}) == 200
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    assert code == 0, log.read_text()

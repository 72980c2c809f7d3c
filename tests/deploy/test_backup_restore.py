"""The README's backup and restore, run as written against a real PostgreSQL: every row of the
tables that matter comes back and the app serves the restored database with an empty Redis;
and its recipe for a lost Redis queues the lost jobs again."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from quart import Quart
from sqlalchemy import text

from taskapi.app import create_app
from taskapi.settings import PROJECT_ROOT
from tests.conftest import PASSWORD, create_account, make_settings, migrate_to_head, state_of
from tests.domain.test_jobs import run_worker_until_idle, settings_of, worker_relay
from tests.services import unavailable

# The tables that hold the service's state, each with the column it is ordered by.
TABLES = {"users": "id", "tasks": "id", "outbox": "id", "revocations": "jti"}


def readme_block(heading: str, starts_with: str) -> str:
    """The README's `sh` block under `heading` that starts with `starts_with`."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split(f"\n{heading}\n", 1)[1].split("\n#", 1)[0]
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        if block.startswith(starts_with):
            return str(block)
    raise AssertionError(f"no block starting {starts_with!r} under {heading!r}")


def plain(url: str) -> str:
    """The URL as an operator writes DATABASE_URL (and libpq's tools read it)."""
    return url.replace("postgresql+asyncpg://", "postgresql://")


def run_block(block: str, cwd: Path, bindir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a README block in bash, stopping at its first failing line, with PostgreSQL's tools
    of the server's own version first on PATH and `.venv` the suite's virtualenv."""
    venv = cwd / ".venv"
    if not venv.exists():
        venv.symlink_to(Path(sys.executable).parent.parent)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TASKAPI_", "DATABASE_URL"))}
    path = f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=cwd,
        env={**base, "PATH": path, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def rows_of(app: Quart) -> dict[str, list[tuple[Any, ...]]]:
    async with state_of(app).db.connection() as connection:
        return {
            table: [
                tuple(row)
                for row in await connection.execute(text(f"SELECT * FROM {table} ORDER BY {key}"))
            ]
            for table, key in TABLES.items()
        }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_readmes_backup_and_restore_bring_everything_back(
    postgres_server, redis_server, tmp_path
):
    for binary in ("pg_dump", "pg_restore", "createdb", "dropdb"):
        if not (postgres_server.bindir / binary).exists():
            unavailable(f"`{binary}` is not installed beside postgres (postgresql-client)")
    redis_server.flush()
    source_url = postgres_server.create_database(f"backup_{os.getpid()}")
    settings = make_settings(source_url, redis_url=redis_server.url)
    await asyncio.to_thread(migrate_to_head, settings)  # alembic runs its own event loop
    secret = settings.jwt_secret_key
    app = create_app(settings)
    async with app.test_app():
        client = app.test_client()
        account = await create_account(app, username="keeper")
        login = {"username": "keeper", "password": PASSWORD}
        logged_out = await (await client.post("/auth/login", json=login)).get_json()
        for title in ("first", "second"):
            response = await client.post(
                "/api/tasks/", json={"title": title}, headers=account.headers
            )
            assert response.status_code == 201
        task_ids = [
            t["id"]
            for t in (await (await client.get("/api/tasks/", headers=account.headers)).get_json())[
                "data"
            ]
        ]
        job = await client.post(f"/api/tasks/{task_ids[0]}/process", headers=account.headers)
        assert job.status_code == 202
        response = await client.post("/auth/logout", headers=bearer(logged_out["access_token"]))
        assert response.status_code == 204
        before = await rows_of(app)
    assert all(before.values()), before  # a row in every table

    dropdb = [str(postgres_server.bindir / "dropdb"), "--if-exists", "-h", "127.0.0.1"]
    dropdb += ["-p", str(postgres_server.port), "-U", "postgres", "taskapi_restored"]
    await asyncio.to_thread(subprocess.run, dropdb, check=True, capture_output=True)
    restored_url = source_url.rsplit("/", 1)[0] + "/taskapi_restored"
    block = readme_block("### Backup and restore", "pg_dump")
    result = await asyncio.to_thread(
        run_block,
        block,
        tmp_path,
        postgres_server.bindir,
        DATABASE_URL=plain(source_url),
        RESTORED_URL=plain(restored_url),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(head)" in result.stdout, result.stdout

    redis_server.flush()  # the restore meets an empty Redis: the worst case
    restored = create_app(
        make_settings(restored_url, redis_url=redis_server.url, jwt_secret_key=secret)
    )
    async with restored.test_app():
        assert await rows_of(restored) == before
        client = restored.test_client()
        assert (await client.post("/auth/login", json=login)).status_code == 200
        listed = await client.get("/api/tasks/", headers=account.headers)
        assert [t["id"] for t in (await listed.get_json())["data"]] == task_ids
        revoked = await client.get("/api/tasks/", headers=bearer(logged_out["access_token"]))
        assert (revoked.status_code, (await revoked.get_json())["error"]["code"]) == (
            401,
            "token_revoked",
        )
        response = await client.post(
            "/api/tasks/", json={"title": "after"}, headers=account.headers
        )
        assert response.status_code == 201
        assert (await response.get_json())["data"]["id"] > max(task_ids)


async def test_the_readmes_recipe_requeues_the_jobs_a_lost_redis_held(
    make_apps, redis_server, postgres_server, tmp_path
):
    (app,) = await make_apps(1)
    account = await create_account(app)
    client = app.test_client()
    response = await client.post("/api/tasks/", json={"title": "lost"}, headers=account.headers)
    task = (await response.get_json())["data"]
    job = await client.post(f"/api/tasks/{task['id']}/process", headers=account.headers)
    status_url = (await job.get_json())["status_url"]
    await worker_relay(app).drain()  # queued in Redis, marked sent in the outbox
    queued = await (await client.get(status_url, headers=account.headers)).get_json()
    assert queued["status"] == "queued"

    redis_server.flush()  # Redis lost, with the queue
    lost = await (await client.get(status_url, headers=account.headers)).get_json()
    assert lost["status"] == "not_found"

    if not (postgres_server.bindir / "psql").exists():
        unavailable("`psql` is not installed beside postgres (postgresql-client)")
    block = readme_block("### Backup and restore", "psql")
    database_url = plain(settings_of(app).database_url)
    result = await asyncio.to_thread(
        run_block, block, tmp_path, postgres_server.bindir, DATABASE_URL=database_url
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "UPDATE 2"  # the e-mail and the processing
    await run_worker_until_idle(settings_of(app))
    done = await (await client.get(status_url, headers=account.headers)).get_json()
    assert done["status"] == "complete", done
    read = await client.get(f"/api/tasks/{task['id']}", headers=account.headers)
    data = (await read.get_json())["data"]
    assert (data["status"], data["description"]) == ("completed", " [Processed]")

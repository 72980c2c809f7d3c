"""The `taskapi` command: serve, migrate, seed and manage users."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import click
from alembic import command
from sqlalchemy.exc import SQLAlchemyError

from taskapi.infra.logs import configure_process_logging
from taskapi.infra.migrate import alembic_config
from taskapi.secret_policy import GENERATE_SECRET, secret_weakness
from taskapi.settings import CONFIG_DIR, Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

DEMO_USERS = (("admin", "admin@example.com", "admin"), ("user", "user@example.com", "user"))
DEMO_PASSWORD = "password"
DEMO_TASKS = (
    ("Read the contract", "CONTRACT.md, before touching a route", "completed"),
    ("Try the API", "curl examples in README.md", "pending"),
    ("Deploy", "hypercorn behind nginx", "pending"),
)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as error:
        raise click.ClickException(f"configuration error: {error}") from None


@click.group()
def main() -> None:
    """taskapi: an asynchronous Task API."""


@main.command()
@click.option("--host", envvar="HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="PORT", default=5000, type=int, show_default=True)
@click.option("--workers", default=1, type=int, show_default=True, help="Development only.")
def serve(host: str, port: int, workers: int) -> None:
    """Serve the API with hypercorn, configured by taskapi/config/hypercorn.toml."""
    from hypercorn.config import Config
    from hypercorn.run import run

    settings = _settings()  # refuse a bad configuration before anything says "serving"
    configure_process_logging(settings.log_level, settings.log_format)
    _refuse_exposed_weak_secret(settings, host)
    _check_port_free(host, port)
    if not _is_loopback(host):
        _retire_the_published_demo_password(settings, host)
    config = Config.from_toml(CONFIG_DIR / "hypercorn.toml")
    config.bind = [f"{host}:{port}"]
    # One worker runs in this process (hypercorn's 0), so its failure is this exit status:
    # hypercorn's parent reports 0 when a spawned worker fails (pgjones/hypercorn#372).
    config.workers = 0 if workers == 1 else workers
    config.application_path = "taskapi.asgi:app"
    shown = f"[{host}]" if ":" in host else host
    _announce(
        settings,
        f"taskapi: serving on http://{shown}:{port}  (API docs: http://{shown}:{port}/docs)",
    )
    sys.exit(run(config))


def _refuse_exposed_weak_secret(settings: Settings, host: str) -> None:
    """Beyond loopback, anyone who can reach the server could forge tokens signed with the
    committed development secret: require a real one there."""
    if _is_loopback(host):
        return
    accepted = enumerate(settings.jwt_accepted_keys, 1)
    keys = [("TASKAPI_JWT_SECRET_KEY", settings.jwt_secret_key)]
    keys += [(f"TASKAPI_JWT_ACCEPTED_KEYS (key {n})", key) for n, key in accepted]
    for variable, key in keys:
        weakness = secret_weakness(key)
        if weakness is not None:
            raise click.ClickException(
                f"{variable}: serving on HOST={host} (beyond loopback) needs a real "
                f"secret, and this one {weakness}; generate one with {GENERATE_SECRET}"
            )


def _retire_the_published_demo_password(settings: Settings, host: str) -> None:
    """Beyond loopback, a demo account must not open with the password the README publishes:
    each one that still has it gets a random password, printed here once."""
    try:
        replaced = asyncio.run(_replace_demo_passwords(settings))
    except (OSError, SQLAlchemyError) as error:
        raise click.ClickException(
            f"cannot check the demo accounts before serving on HOST={host} (beyond loopback): "
            f"the database could not be read ({type(error).__name__}); is it up and migrated "
            "(taskapi db upgrade)?"
        ) from None
    for username, password in replaced:
        _announce(
            settings,
            f"taskapi: demo account {username!r} had the published password; on HOST={host} "
            f"(beyond loopback) its password is now {password}  (shown once)",
        )


def _announce(settings: Settings, line: str) -> None:
    """A line `taskapi serve` prints before serving: as it is, or, in JSON logs, as a log line
    like every other line the process writes (a warning, so that no log level hides it)."""
    if settings.log_format == "json":
        logging.getLogger("taskapi.cli").warning("%s", line)
    else:
        click.echo(line)


async def _replace_demo_passwords(settings: Settings) -> list[tuple[str, str]]:
    """Give every demo account that still has DEMO_PASSWORD a random one (and a new token
    generation); the (username, password) pairs given."""
    from sqlalchemy import inspect

    from taskapi.domain.accounts import authenticate, replace_password

    async def work(unit: Any, parts: Any) -> list[tuple[str, str]]:
        connection, passwords = unit.connection, parts.passwords
        if not await connection.run_sync(lambda sync: inspect(sync).has_table("users")):
            return []  # not migrated yet: no account at all
        replaced = []
        for username, _email, _role in DEMO_USERS:
            user = await authenticate(connection, passwords, username, DEMO_PASSWORD)
            if user is not None:
                password = secrets.token_urlsafe(12)
                await replace_password(connection, passwords, user.id, password)
                replaced.append((user.username, password))
        return replaced

    result: list[tuple[str, str]] = await _in_transaction(settings, work)
    return result


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise click.ClickException(
                f"cannot listen on {host}:{port}: {error.strerror} (try PORT=...)"
            ) from None


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@main.command()
def worker() -> None:
    """Run the arq worker for the background jobs (the same as `arq worker.WorkerSettings
    --custom-log-dict worker.LOG_CONFIG`)."""
    import logging.config

    from arq import run_worker

    from taskapi.worker_settings import ARQ_LOG_CONFIG, build_worker_settings

    settings = _settings()
    configure_process_logging(settings.log_level, settings.log_format)
    try:
        worker_settings = build_worker_settings(settings)
    except SettingsError as error:
        raise click.ClickException(f"configuration error: {error}") from None
    logging.config.dictConfig(ARQ_LOG_CONFIG)  # as the `arq` command does with the option
    run_worker(worker_settings)


@main.group()
def db() -> None:
    """Database migrations (Alembic)."""


@db.command()
@click.argument("revision", default="head")
def upgrade(revision: str) -> None:
    """Upgrade the schema to REVISION (default: head)."""
    command.upgrade(alembic_config(_settings()), revision)


@db.command()
@click.argument("revision", default="-1")
def downgrade(revision: str) -> None:
    """Downgrade the schema to REVISION (default: one step back; `base` for empty)."""
    command.downgrade(alembic_config(_settings()), revision)


@db.command()
def current() -> None:
    """Show the schema's current revision."""
    command.current(alembic_config(_settings()), verbose=True)


@db.command()
def history() -> None:
    """List the revisions."""
    command.history(alembic_config(_settings()), verbose=True)


@db.command()
@click.option("-m", "--message", required=True)
@click.option("--autogenerate", is_flag=True, help="Diff the models against the database.")
def revision(message: str, autogenerate: bool) -> None:
    """Create a new revision file in taskapi/migrations/versions."""
    command.revision(alembic_config(_settings()), message=message, autogenerate=autogenerate)


@main.command("init-db")
@click.option("--demo", is_flag=True, help="Seed admin/password, user/password and 3 tasks.")
def init_db(demo: bool) -> None:
    """Upgrade the schema to head; with --demo, seed the demo users (never in production)."""
    settings = _settings()
    if demo and settings.is_production:
        raise click.ClickException("--demo refuses to seed demo users in production")
    command.upgrade(alembic_config(settings), "head")
    if demo:
        created = asyncio.run(_seed_demo(settings))
        click.echo("demo data: " + (", ".join(created) if created else "already present"))


@main.command("create-user")
@click.option("--username", required=True)
@click.option("--email", required=True)
@click.option("--admin", is_flag=True, help="Give the user the admin role.")
@click.password_option(envvar="TASKAPI_NEW_USER_PASSWORD", help="Prompted when not given.")
def create_user(username: str, email: str, admin: bool, password: str) -> None:
    """Create a user (or an admin) directly in the database."""
    from pydantic import ValidationError

    from taskapi.blueprints.auth.schemas import RegisterRequest
    from taskapi.http.validation import field_errors

    try:
        RegisterRequest(username=username, email=email, password=password)
    except ValidationError as error:  # named by field, never echoing the input (the password)
        problems = field_errors(error)
        raise click.ClickException(
            "; ".join(f"{field}: {', '.join(found)}" for field, found in problems.items())
        ) from None
    user_id = asyncio.run(
        _create_user(_settings(), username, email, password, "admin" if admin else "user")
    )
    click.echo(f"created {'admin' if admin else 'user'} {username!r} with id {user_id}")


@main.command("delete-user")
@click.option("--username", required=True, help="Matched by its canonical form, as at login.")
@click.confirmation_option(prompt="Delete this user and all of their tasks?")
def delete_user(username: str) -> None:
    """Delete a user and their tasks; cached answers that showed them are dropped."""
    settings = _settings()
    user_id = asyncio.run(_delete_user(settings, username))
    if user_id is None:
        raise click.ClickException(f"no user {username!r}")
    click.echo(f"deleted user {username!r} (id {user_id}) and their tasks")
    if settings.cache_enabled and not settings.redis_url:
        click.echo(
            "note: without REDIS_URL each server process caches in memory; a running server "
            "may show the deleted tasks in admin lists until its cache entries expire"
        )


@main.group()
def users() -> None:
    """Manage accounts: role, deactivation, revoking every token. Each takes effect in every
    running process within TASKAPI_USER_CACHE_SECONDS."""


@users.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(["admin", "user"]))
def set_role(username: str, role: str) -> None:
    """Give USERNAME the role ROLE."""
    from taskapi.domain import accounts

    _change_account(username, lambda c, user_id: accounts.set_role(c, user_id, role))
    click.echo(f"{username!r} is now {'an admin' if role == 'admin' else 'a user'}")


@users.command()
@click.argument("username")
def deactivate(username: str) -> None:
    """Refuse USERNAME's logins and every token issued to it (its tasks are kept)."""
    from taskapi.domain import accounts

    _change_account(username, lambda c, user_id: accounts.set_active(c, user_id, False))
    click.echo(f"deactivated {username!r}: its logins and tokens are refused")


@users.command()
@click.argument("username")
def activate(username: str) -> None:
    """Let a deactivated USERNAME log in again (its tokens from before stay refused)."""
    from taskapi.domain import accounts

    _change_account(username, lambda c, user_id: accounts.set_active(c, user_id, True))
    click.echo(f"activated {username!r}: it may log in again")


@users.command("logout-everywhere")
@click.argument("username")
def logout_everywhere(username: str) -> None:
    """Revoke every access and refresh token issued to USERNAME so far."""
    from taskapi.domain import accounts

    _change_account(username, accounts.revoke_all_tokens)
    click.echo(f"revoked every token of {username!r}; it may log in again")


def _change_account(
    username: str, change: Callable[[AsyncConnection, int], Awaitable[bool]]
) -> None:
    """Apply one account service's change to the account named `username` (matched by its
    canonical form, as at login), in one transaction; an unknown name is an error."""
    from taskapi.domain import accounts

    async def apply(unit: Any, _parts: Any) -> bool:
        user_id = await accounts.account_id_named(unit.connection, username)
        return user_id is not None and await change(unit.connection, user_id)

    if not asyncio.run(_in_transaction(_settings(), apply)):
        raise click.ClickException(f"no user {username!r}")


async def _delete_user(settings: Settings, username: str) -> int | None:
    from taskapi.domain import accounts

    async def delete(unit: Any, _parts: Any) -> int | None:
        user_id = await accounts.account_id_named(unit.connection, username)
        if user_id is None or not await accounts.delete_user(unit, user_id):
            return None
        return user_id

    result: int | None = await _in_transaction(settings, delete)
    return result


async def _in_transaction(settings: Settings, work: Any) -> Any:
    """Run `work(unit, parts)` in one unit of work on this process's parts: all of it is
    written, or none; its effects (stale cache versions, jobs) follow the commit."""
    from taskapi.domain import work as units
    from taskapi.wiring import build_parts

    parts = build_parts(settings, "cli")
    await parts.open()
    try:
        async with units.transaction(parts.db, parts.effects) as unit:
            return await work(unit, parts)
    finally:
        await parts.close()


async def _create_user(
    settings: Settings, username: str, email: str, password: str, role: str
) -> int:
    from taskapi.domain.accounts import register_user
    from taskapi.errors import APIError

    async def create(unit: Any, parts: Any) -> int:
        try:
            user = await register_user(
                unit.connection,
                parts.passwords,
                username=username,
                email=email,
                password=password,
                role=role,
            )
        except APIError as error:
            raise click.ClickException(error.message) from None
        return int(user.id)

    user_id: int = await _in_transaction(settings, create)
    return user_id


async def _seed_demo(settings: Settings) -> list[str]:
    from taskapi.domain import tasks
    from taskapi.domain.accounts import account_id_named, register_user
    from taskapi.domain.viewer import Viewer

    async def seed(unit: Any, parts: Any) -> list[str]:
        created: list[str] = []
        for username, email, role in DEMO_USERS:
            if await account_id_named(unit.connection, username) is None:
                await register_user(
                    unit.connection,
                    parts.passwords,
                    username=username,
                    email=email,
                    password=DEMO_PASSWORD,
                    role=role,
                )
                created.append(f"{role} {username!r}")
        owner = await account_id_named(unit.connection, "user")
        if created and owner is not None:
            for title, text, status in DEMO_TASKS:
                fields = {"title": title, "description": text, "status": status}
                await tasks.create_task(unit, Viewer(owner, "user"), fields)
            created.append(f"{len(DEMO_TASKS)} tasks")
        return created

    result: list[str] = await _in_transaction(settings, seed)
    return result

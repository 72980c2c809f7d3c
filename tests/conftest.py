"""Fixtures: real databases (SQLite file and a PostgreSQL server), apps, clients per role."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from quart import Quart
from quart.typing import TestClientProtocol
from redis.asyncio import Redis
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from taskapi.app import create_app
from taskapi.blueprints.health import READINESS, ReadinessCache
from taskapi.domain import work
from taskapi.domain.accounts import register_user
from taskapi.domain.parts import Parts
from taskapi.domain.tasks import TASKS, create_task
from taskapi.domain.viewer import Viewer
from taskapi.http.tokens import VerifiedTokens, issue_tokens
from taskapi.infra.db import Database
from taskapi.infra.memory.idempotency import MemoryIdempotency
from taskapi.infra.memory.login_failures import MemoryLoginFailures
from taskapi.infra.memory.queue import InProcessQueue
from taskapi.infra.memory.state import MemoryAnswers, MemoryGatekeeper, MemoryRevocations
from taskapi.infra.migrate import alembic_config
from taskapi.infra.redis.state import REVOKED_KEY, RedisRevocations
from taskapi.settings import Settings, load_settings
from tests.services import PostgresServer, RedisServer, running_postgres, running_redis

BACKENDS = ("sqlite", "postgres")
PASSWORD = "correct-horse-battery"
_names = itertools.count(1)


@pytest.fixture(autouse=True)
def _taskapi_logging_restored() -> Iterator[None]:
    """A test that starts a worker in this process leaves taskapi's logger configured (its own
    handler, no propagation to the root where caplog listens): put it back as it was."""
    logger = logging.getLogger("taskapi")
    saved = (logger.level, list(logger.handlers), logger.propagate)
    yield
    logger.setLevel(saved[0])
    logger.handlers[:] = saved[1]
    logger.propagate = saved[2]


@contextlib.contextmanager
def taskapi_records(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """caplog sees taskapi's records even once a worker started in this process has turned
    their propagation to the root logger off."""
    logger = logging.getLogger("taskapi")
    logger.addHandler(caplog.handler)
    try:
        yield
    finally:
        logger.removeHandler(caplog.handler)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture(scope="session")
def shared_settings(postgres_server: PostgresServer) -> Settings:
    """PostgreSQL settings for tests of several app instances sharing one database and Redis."""
    result = make_settings(postgres_server.create_database("taskapi_shared"))
    migrate_to_head(result)
    return result


# The role cache's time (TASKAPI_USER_CACHE_SECONDS): off, as config/testing.toml has it, and
# on, as production's default. The gate's test modules run their tests both ways:
#     @pytest.fixture(params=ROLE_CACHE_SECONDS, ids=ROLE_CACHE_IDS)
#     def user_cache_seconds(request): return request.param
PRODUCTION_USER_CACHE_SECONDS: float = Settings.model_fields["user_cache_seconds"].default
ROLE_CACHE_SECONDS = [0.0, PRODUCTION_USER_CACHE_SECONDS]
ROLE_CACHE_IDS = ["role-cache-off", "role-cache-on"]


@pytest.fixture
def user_cache_seconds() -> float | None:
    """The role cache time of `make_apps`' apps; None: the testing configuration's."""
    return None


@pytest.fixture
async def make_apps(
    shared_settings: Settings, redis_server: RedisServer, user_cache_seconds: float | None
) -> AsyncIterator[Any]:
    """Factory: `await make_apps(2, ratelimit_enabled=True)` → app instances, as processes would
    be, on one PostgreSQL and one Redis (emptied first). `backend="memory"` leaves Redis out."""
    redis_server.flush()
    defaults = {} if user_cache_seconds is None else {"user_cache_seconds": user_cache_seconds}
    async with contextlib.AsyncExitStack() as stack:
        emptied = False

        async def factory(count: int = 1, backend: str = "redis", **overrides: Any) -> list[Quart]:
            nonlocal emptied
            if not emptied:  # before an app starts: its relay would take an earlier test's rows
                await empty_database(shared_settings)
            redis_url = redis_server.url if backend == "redis" else ""
            apps = []
            for _ in range(count):
                chosen = {**defaults, **overrides}
                application = create_app(replaced(shared_settings, redis_url=redis_url, **chosen))
                await stack.enter_async_context(application.test_app())
                apps.append(application)
            if not emptied:
                await empty_tables(apps[0])
                emptied = True
            return apps

        yield factory
    if redis_server.process is None:  # a test stopped it: leave it running for the next
        redis_server.start()


def make_settings(database_url: str, **overrides: Any) -> Settings:
    return load_settings(environ={}, env="testing", database_url=database_url, **overrides)


def replaced(settings: Settings, **changes: Any) -> Settings:
    """A copy of `settings` with some values changed, parsed and validated as load_settings'
    overrides are (a bad value is a SettingsError naming its variable)."""
    return load_settings(environ={}, **{**settings.model_dump(), **changes})


def migrate_to_head(settings: Settings) -> None:
    command.upgrade(alembic_config(settings), "head")


@pytest.fixture(scope="session", params=BACKENDS)
def settings(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Test settings on each backend, its schema built by the Alembic migrations."""
    if request.param == "sqlite":
        path = Path(tmp_path_factory.mktemp("sqlite")) / "taskapi.db"
        url = f"sqlite+aiosqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_server").create_database("taskapi_test")
    result = make_settings(url)
    migrate_to_head(result)
    return result


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Quart]:
    application = create_app(settings)
    async with application.test_app():
        yield application


def session_on(database: Database) -> AsyncSession:
    """An ORM session in a transaction on the app's database, for tests that read models."""
    return AsyncSession(database.engine, expire_on_commit=False)


@contextlib.asynccontextmanager
async def redis_of(app: Quart) -> AsyncIterator[Redis]:
    """A client of the Redis an app instance shares its state in (for tests that look in)."""
    client = Redis.from_url(state_of(app).settings.redis_url)
    try:
        yield client
    finally:
        await client.aclose()


def state_of(app: Quart) -> Parts:
    result: Parts = app.extensions["taskapi"]
    return result


async def empty_database(settings: Settings) -> None:
    """Empty the shared PostgreSQL database's tables, with no app on it yet."""
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("TRUNCATE outbox, tasks, users, revocations RESTART IDENTITY CASCADE")
            )
    finally:
        await engine.dispose()


async def empty_tables(app: Quart) -> None:
    """Empty the tables and every store the app keeps in this process, so that a test starts
    as a fresh process would: no answer, revocation, budget, role, job or readiness of an
    earlier test."""
    state = state_of(app)
    if isinstance(state.queue, InProcessQueue):
        await state.queue.clear()  # first: a job still running could write after the wipe
    async with state.db.engine.begin() as connection:
        if state.settings.is_sqlite:
            await connection.execute(text("DELETE FROM outbox"))
            await connection.execute(text("DELETE FROM tasks"))
            await connection.execute(text("DELETE FROM users"))
            await connection.execute(text("DELETE FROM revocations"))
        else:
            await connection.execute(
                text("TRUNCATE outbox, tasks, users, revocations RESTART IDENTITY CASCADE")
            )
    stores = (
        state.answers,
        state.revocations,
        state.login_failures,
        state.idempotency,
        state.gatekeeper,
    )
    for store in stores:
        if isinstance(store, MemoryAnswers):
            await store.clear()
        elif isinstance(store, MemoryRevocations | MemoryLoginFailures | MemoryIdempotency):
            store.clear()
        elif isinstance(store, MemoryGatekeeper):
            store.gcra.clear()
    if isinstance(state.revocations, RedisRevocations):  # the record is empty: so is its copy
        async with redis_of(app) as redis:
            await redis.delete(REVOKED_KEY)
        await state.revocations.mark_loaded()
    state.roles.clear()
    verified: VerifiedTokens = app.extensions["taskapi.tokens"]
    verified.clear()
    readiness: ReadinessCache = app.extensions[READINESS]
    readiness.clear()


async def tasks_sharing_one_created_at(app: Quart, owner_id: int, count: int) -> list[int]:
    """`count` tasks of one owner with one `created_at`, oldest id first: created in one
    transaction, which on PostgreSQL shares one CURRENT_TIMESTAMP; SQLite's clock moves between
    statements, so there the times are then set equal."""
    state = state_of(app)
    viewer = Viewer(owner_id, "user")
    async with work.transaction(state.db, state.effects) as unit:
        rows = [await create_task(unit, viewer, {"title": f"tied {i}"}) for i in range(count)]
        ids = [row.id for row in rows]
        if state.settings.is_sqlite:
            await unit.connection.execute(
                update(TASKS).where(TASKS.c.id.in_(ids)).values(created_at=rows[0].created_at)
            )
        stamps = await unit.connection.scalars(
            select(TASKS.c.created_at).where(TASKS.c.id.in_(ids)).distinct()
        )
        assert len(list(stamps)) == 1
    return ids


@pytest.fixture
async def clean_db(app: Quart) -> None:
    """Every test starts with empty tables."""
    await empty_tables(app)


@pytest.fixture
def client(app: Quart, clean_db: None) -> TestClientProtocol:
    return app.test_client()


@dataclasses.dataclass
class Account:
    id: int
    username: str
    email: str
    password: str
    role: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


class ApiClient:
    """A test client that sends one account's access token with every request."""

    def __init__(self, client: TestClientProtocol, account: Account) -> None:
        self.client = client
        self.account = account

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        return {**self.account.headers, **(extra or {})}

    async def get(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        return await self.client.get(path, headers=self._headers(headers), **kw)

    async def delete(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        return await self.client.delete(path, headers=self._headers(headers), **kw)

    async def post(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        return await self.client.post(path, headers=self._headers(headers), **kw)

    async def put(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        return await self.client.put(path, headers=self._headers(headers), **kw)

    async def patch(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        return await self.client.patch(path, headers=self._headers(headers), **kw)

    async def create_task(self, **fields: Any) -> dict[str, Any]:
        response = await self.post("/api/tasks/", json={"title": "a task", **fields})
        assert response.status_code == 201, await response.get_data(as_text=True)
        task: dict[str, Any] = (await response.get_json())["data"]
        return task


async def create_account(app: Quart, role: str = "user", username: str | None = None) -> Account:
    """A new account of a role, straight through the service, with its tokens."""
    name = username or f"{role}{next(_names)}"
    state = state_of(app)
    async with state.db.connection() as connection:
        user = await register_user(
            connection,
            state.passwords,
            username=name,
            email=f"{name}@example.com",
            password=PASSWORD,
            role=role,
        )
    async with app.app_context():
        access, refresh = issue_tokens(user.id, role, user.token_generation)
    return Account(user.id, name, f"{name}@example.com", PASSWORD, role, access, refresh)


@pytest.fixture
def make_account(app: Quart, clean_db: None) -> Any:
    """Factory: `await make_account("admin")` → a new account with its tokens."""

    async def factory(role: str = "user", username: str | None = None) -> Account:
        return await create_account(app, role, username)

    return factory


@pytest.fixture
def client_as(client: TestClientProtocol, make_account: Any) -> Any:
    """Factory: `await client_as("admin")` → an ApiClient for a new account of that role."""

    async def factory(role: str = "user") -> ApiClient:
        return ApiClient(client, await make_account(role))

    return factory


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The random order's seed again at the end (pytest-randomly prints it first), with how to
    replay it."""
    seed = getattr(config.option, "randomly_seed", None)
    if isinstance(seed, int) and config.getoption("randomly_reorganize", True):
        terminalreporter.write_line(
            f"random order: --randomly-seed={seed} replays it, -p no:randomly runs in file order"
        )

"""Fixtures: real databases (SQLite file and a PostgreSQL server), apps, clients per role."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from quart import Quart
from quart.typing import TestClientProtocol
from sqlalchemy import text

from taskapi.app import create_app
from taskapi.auth.service import register_user
from taskapi.auth.tokens import issue_access_token, issue_refresh_token
from taskapi.migrate import alembic_config
from taskapi.settings import Settings, load_settings
from taskapi.state import AppState
from tests.services import PostgresServer, running_postgres

BACKENDS = ("sqlite", "postgres")
PASSWORD = "correct-horse-battery"
_names = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


def make_settings(database_url: str, **overrides: Any) -> Settings:
    return load_settings(environ={}, env="testing", database_url=database_url, **overrides)


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


def state_of(app: Quart) -> AppState:
    result: AppState = app.extensions["taskapi"]
    return result


@pytest.fixture
async def clean_db(app: Quart) -> None:
    """Every test starts with empty tables."""
    state = state_of(app)
    async with state.db.engine.begin() as connection:
        if state.settings.is_sqlite:
            await connection.execute(text("DELETE FROM tasks"))
            await connection.execute(text("DELETE FROM users"))
        else:
            await connection.execute(text("TRUNCATE tasks, users RESTART IDENTITY CASCADE"))


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


@pytest.fixture
def make_account(app: Quart, clean_db: None) -> Any:
    """Factory: a new account of a role, straight through the service, with its tokens."""

    async def factory(role: str = "user", username: str | None = None) -> Account:
        name = username or f"{role}{next(_names)}"
        state = state_of(app)
        async with state.db.session() as session:
            user = await register_user(
                session,
                state.passwords,
                username=name,
                email=f"{name}@example.com",
                password=PASSWORD,
                role=role,
            )
        async with app.app_context():
            access, refresh = issue_access_token(user.id, role), issue_refresh_token(user.id)
        return Account(user.id, name, f"{name}@example.com", PASSWORD, role, access, refresh)

    return factory


@pytest.fixture
def client_as(client: TestClientProtocol, make_account: Any) -> Any:
    """Factory: `await client_as("admin")` → an ApiClient for a new account of that role."""

    async def factory(role: str = "user") -> ApiClient:
        return ApiClient(client, await make_account(role))

    return factory

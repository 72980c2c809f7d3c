"""Pooled PostgreSQL connections cut by the server (a restart, an administrator): one the client
already saw closed is replaced for free; one that sat idle is pinged and replaced before a
request uses it. Connections in steady use are not pinged (pool_pre_ping's round trip per
checkout cost over a quarter of a write's time)."""

from __future__ import annotations

import asyncio
import dataclasses

from quart import Quart
from sqlalchemy import event, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from taskapi.infra.db import DISPOSE_SECONDS, Database, needs_ping
from tests.conftest import create_account, replaced
from tests.services import until


async def _cut_the_apps_connections(app: Quart) -> int:
    """Terminate every server process of the app's database but the caller's own."""
    engine = create_async_engine(app.extensions["taskapi"].settings.database_url)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            return int(result.scalar_one())
    finally:
        await engine.dispose()


@dataclasses.dataclass
class _Relayed:
    client_reader: asyncio.StreamReader
    client_writer: asyncio.StreamWriter
    server_writer: asyncio.StreamWriter
    pumps: list[asyncio.Task[None]]


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


class SilentCutProxy:
    """A TCP relay to PostgreSQL that can drop its server connections without a word to the
    client, as a firewall's idle timeout does: the client learns only when it next writes."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._relayed: list[_Relayed] = []
        self._cut: list[_Relayed] = []
        self._watchers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        pumps = [
            asyncio.create_task(_pump(reader, server_writer)),
            asyncio.create_task(_pump(server_reader, writer)),
        ]
        self._relayed.append(_Relayed(reader, writer, server_writer, pumps))

    def cut(self, *, reset_on_write: bool = True) -> int:
        """Close every server side; each client side stays silent until the client writes
        (then it is reset), or for good (`reset_on_write=False`: a firewall that drops)."""
        for relayed in self._relayed:
            for pump in relayed.pumps:
                pump.cancel()
            relayed.server_writer.transport.abort()
            if reset_on_write:
                self._watchers.append(asyncio.create_task(_reset_on_next_write(relayed)))
        self._cut.extend(self._relayed)
        cut, self._relayed = len(self._relayed), []
        return cut

    async def close(self) -> None:
        for relayed in self._relayed:
            for pump in relayed.pumps:
                pump.cancel()
            relayed.server_writer.transport.abort()
            relayed.client_writer.transport.abort()
        for watcher in self._watchers:
            watcher.cancel()
        # a cut connection the client has not written to since is still silent: end it, or the
        # app's shutdown would wait on it (closing a connection waits for the server's answer)
        for relayed in self._cut:
            relayed.client_writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def _reset_on_next_write(relayed: _Relayed) -> None:
    await relayed.client_reader.read(1)
    relayed.client_writer.transport.abort()


async def test_an_idle_connection_cut_silently_is_pinged_and_replaced(make_apps, shared_settings):
    """No EOF reaches the client, so only the ping on checkout can find the connection dead."""
    url = make_url(shared_settings.database_url)
    proxy = SilentCutProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    try:
        (app,) = await make_apps(
            1,
            backend="memory",
            database_url=url.set(host="127.0.0.1", port=proxy.port).render_as_string(False),
            db_ping_after_idle_seconds=0,
            cache_enabled=False,
        )
        account = await create_account(app)
        client = app.test_client()
        assert (await client.get("/api/tasks/", headers=account.headers)).status_code == 200
        assert proxy.cut() >= 1
        response = await client.get("/api/tasks/", headers=account.headers)
        assert response.status_code == 200
    finally:
        await proxy.close()


async def test_a_connection_seen_closed_is_replaced_without_a_ping(make_apps):
    (app,) = await make_apps(
        1, backend="memory", db_ping_after_idle_seconds=3600, cache_enabled=False
    )
    pooled = []
    event.listen(
        app.extensions["taskapi"].db.engine.sync_engine,
        "checkin",
        lambda dbapi_connection, _record: pooled.append(dbapi_connection.driver_connection),
    )
    account = await create_account(app)
    client = app.test_client()
    assert (await client.get("/api/tasks/", headers=account.headers)).status_code == 200
    assert pooled, "the request's connection went back to the pool"
    assert await _cut_the_apps_connections(app) >= 1
    await until(lambda: all(c.is_closed() for c in pooled), "the client to see the cut", 10)
    assert (await client.get("/api/tasks/", headers=account.headers)).status_code == 200


def test_only_connections_idle_long_enough_are_pinged():
    assert not needs_ping(None, 100.0, 5.0)  # new: just connected
    assert not needs_ping(98.0, 100.0, 5.0)  # in steady use
    assert needs_ping(95.0, 100.0, 5.0)
    assert needs_ping(100.0, 100.0, 0.0)  # 0: every checkout, like pool_pre_ping


async def test_a_request_holds_one_pooled_connection_at_most(make_apps):
    """The guard's role lookup, the ORM session of the auth routes and the task statements
    share the request's one connection: with a pool of one, every route still answers (two
    per request would wait on the pool forever)."""
    (app,) = await make_apps(
        1, backend="memory", db_pool_size=1, db_max_overflow=0, cache_enabled=False
    )
    account = await create_account(app)
    client = app.test_client()
    assert (await client.get("/auth/me", headers=account.headers)).status_code == 200
    created = await client.post("/api/tasks/", headers=account.headers, json={"title": "t"})
    assert created.status_code == 201
    url = f"/api/tasks/{(await created.get_json())['data']['id']}"
    assert (await client.get(url, headers=account.headers)).status_code == 200
    assert (await client.delete(url, headers=account.headers)).status_code == 204


async def test_closing_the_pool_does_not_wait_on_connections_cut_silently(shared_settings, caplog):
    """Closing a connection waits for the server's answer, which a silently cut one never
    sends: the pool's close gives up after DISPOSE_SECONDS and says so."""
    url = make_url(shared_settings.database_url)
    proxy = SilentCutProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    database = Database(
        replaced(
            shared_settings,
            database_url=url.set(host="127.0.0.1", port=proxy.port).render_as_string(False),
        )
    )
    try:
        await database.connect()

        async def use() -> None:
            async with database.connection() as connection:
                await connection.execute(text("SELECT pg_sleep(0.05)"))

        await asyncio.gather(*(use() for _ in range(3)))  # three connections in the pool
        assert proxy.cut(reset_on_write=False) == 3
        await asyncio.wait_for(database.dispose(), DISPOSE_SECONDS + 30)
        assert "database connections not closed within" in caplog.text
    finally:
        await proxy.close()

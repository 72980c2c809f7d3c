"""The engine and its connections, the declarative Base and portable column types."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager as AsyncContextManager
from pathlib import Path
from typing import Any, ClassVar

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
from sqlalchemy import DateTime, MetaData, Table, event, make_url
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    create_async_engine,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

from taskapi.infra.incidents import Incident
from taskapi.settings import Settings

log = logging.getLogger(__name__)

# SQLSTATE classes that mean the server cannot be reached or is going away, not that a statement
# is wrong: 08 connection exception, 57P operator intervention (admin shutdown, crash shutdown,
# "the database system is shutting down", database dropped, idle session timeout)
UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "57P")
# how long closing the pool may take at shutdown
DISPOSE_SECONDS = 2.0

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # Each model is mapped to a Table of its __tablename__ (SQLAlchemy's type says any
    # FromClause: a class may be mapped to a join or a subquery, which none here is).
    __table__: ClassVar[Table]


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware timestamp that always comes back as UTC, SQLite included."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is not None and dialect.name == "sqlite" and value.tzinfo is not None:
            return value.astimezone(dt.UTC).replace(tzinfo=None)
        return value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


class utcnow(FunctionElement[dt.datetime]):
    """The database's current time, written so that SQLite stores SQLAlchemy's own format."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(utcnow)
def _utcnow_default(element: utcnow, compiler: SQLCompiler, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP"


@compiles(utcnow, "sqlite")
def _utcnow_sqlite(element: utcnow, compiler: SQLCompiler, **kw: Any) -> str:
    # microsecond-width text, comparable with the values SQLAlchemy binds (keyset cursors)
    return "(strftime('%Y-%m-%d %H:%M:%f000', 'now'))"


class utcnow_after(FunctionElement[dt.datetime]):
    """The database's current time, or one tick past `column` when the clock has not passed it:
    an `updated_at` that strictly increases on every write, two in one clock tick included."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(utcnow_after)
def _utcnow_after_default(element: utcnow_after, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"GREATEST(CURRENT_TIMESTAMP, {column} + INTERVAL '1 microsecond')"


@compiles(utcnow_after, "sqlite")
def _utcnow_after_sqlite(element: utcnow_after, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite's clock has millisecond ticks; both sides in utcnow's text format, so max() of
    # the texts is the later time
    column = compiler.process(element.clauses, **kw)
    return (
        "max(strftime('%Y-%m-%d %H:%M:%f000', 'now'),"
        f" strftime('%Y-%m-%d %H:%M:%f000', {column}, '+0.001 seconds'))"
    )


def create_engine(settings: Settings) -> AsyncEngine:
    """One engine per process: a pool for PostgreSQL, pragmas on every SQLite connection."""
    if settings.is_sqlite:
        ensure_sqlite_directory(settings.database_url)
        engine = create_async_engine(settings.database_url, echo=settings.db_echo)
        busy_ms = settings.sqlite_busy_timeout_ms

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    engine = create_async_engine(
        settings.database_url,
        echo=settings.db_echo,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        connect_args=pgbouncer_arguments() if settings.db_pgbouncer else {},
    )
    ping_after_idle(engine, settings.db_ping_after_idle_seconds)
    return engine


# workaround: SQLAlchemy's PgBouncer recipe (unique statement names) fails in autocommit (pinned by tests/test_library_defects.py::test_sqlalchemy_pgbouncer_recipe_fails_in_autocommit)
def pgbouncer_arguments() -> dict[str, Any]:
    """asyncpg's connection arguments behind PgBouncer in transaction mode, where consecutive
    statements may run on different server connections. With its statement cache off asyncpg
    prepares unnamed statements and parses each again in the same message batch as its
    execution, so no statement outlives the server connection it ran on. Named ones (even the
    unique names SQLAlchemy's documentation suggests) are not parsed again: they fail."""
    return {"statement_cache_size": 0}


def needs_ping(idle_since: float | None, now: float, ping_after_idle: float) -> bool:
    """Whether a connection checked in at `idle_since` must be pinged before use at `now`."""
    return idle_since is not None and now - idle_since >= ping_after_idle


def ping_after_idle(engine: AsyncEngine, seconds: float) -> None:
    """`pool_pre_ping` only for connections idle for `seconds` (a busy one is known to be alive),
    so a steady load pays no ping per checkout; one the server already closed is replaced."""
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # a connection the server already closed (asyncpg saw the EOF) is replaced for free
        if dbapi_connection.driver_connection.is_closed():
            raise DisconnectionError("the server closed the connection")
        if not needs_ping(record.info.get("idle_since"), time.monotonic(), seconds):
            return
        try:
            sync_engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # the pool replaces the connection and tries again
            raise DisconnectionError(str(error)) from error


def is_foreign_key_violation(error: IntegrityError) -> bool:
    """Whether a statement was refused for a foreign key: PostgreSQL's SQLSTATE 23503, or
    SQLite's extended code SQLITE_CONSTRAINT_FOREIGNKEY."""
    driver_error = error.orig
    return (
        getattr(driver_error, "sqlstate", None) == "23503"
        or getattr(driver_error, "sqlite_errorname", None) == "SQLITE_CONSTRAINT_FOREIGNKEY"
    )


@contextlib.asynccontextmanager
async def explicit_transaction(connection: AsyncConnection) -> AsyncIterator[None]:
    """A transaction on an autocommit connection, by its own statements (SQLite: BEGIN
    IMMEDIATE takes the write lock at once, so two writers never deadlock upgrading theirs)."""
    begin = "BEGIN IMMEDIATE" if connection.dialect.name == "sqlite" else "BEGIN"
    await connection.exec_driver_sql(begin)
    try:
        yield
    except BaseException:
        await connection.exec_driver_sql("ROLLBACK")
        raise
    await connection.exec_driver_sql("COMMIT")


def is_unavailable(error: BaseException) -> bool:
    """Whether `error` means the database cannot be reached now (a restart, a shutdown, a cut
    connection, a refused connect), by its SQLSTATE where the driver gave one."""
    if isinstance(error, OSError):  # asyncpg's connect: refused, reset, unreachable, timed out
        return True
    if not isinstance(error, DBAPIError):
        return False
    sqlstate = getattr(error.orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(UNAVAILABLE_SQLSTATE_PREFIXES):
        return True
    return error.connection_invalidated


def driver_error(error: BaseException) -> BaseException:
    """The driver's own exception behind SQLAlchemy's wrapper (asyncpg's, named for what went
    wrong), for the log."""
    if isinstance(error, DBAPIError) and error.orig is not None:
        return error.orig.__cause__ or error.orig
    return error


def ensure_sqlite_directory(url: str) -> None:
    path = url.split(":///", 1)[-1].split("?", 1)[0]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


class Database:
    """The engine of one process, connected before serving and disposed of after."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: AsyncEngine | None = None
        self._autocommit: AsyncEngine | None = None
        # an outage logs when it is first seen and when a connection succeeds again
        self.outage = Incident(log, "database", "answering 503 until it accepts connections")

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("the database is not connected (before_serving has not run)")
        return self._engine

    def transaction(self) -> AsyncContextManager[AsyncConnection]:
        """`async with db.transaction() as connection`: several statements that commit together
        (or not at all, when the block raises)."""
        return self.engine.begin()

    def connection(self) -> AsyncConnection:
        """An autocommit connection from the pool, for single statements: `await` it, or use
        it as `async with`."""
        if self._autocommit is None:
            raise RuntimeError("the database is not connected (before_serving has not run)")
        return self._autocommit.connect()

    @contextlib.asynccontextmanager
    async def listening(
        self, channel: str, callback: Callable[[], None]
    ) -> AsyncIterator[Callable[[], bool]]:
        """Call `callback` on each NOTIFY of `channel` while the block runs (PostgreSQL; on a
        dedicated connection), and once more if that connection is lost; the block gets a
        function that tells whether it still listens. It connects to TASKAPI_DB_LISTEN_URL when
        set, else DATABASE_URL. Elsewhere, or when listening fails, nothing is called: the
        caller polls (see Settings.listens_for_commits)."""
        if self.settings.is_sqlite:
            yield lambda: True  # nothing to listen to, nothing lost
            return
        connection: Any = None  # an asyncpg.Connection
        refused = False  # listening is refused for good (not an outage): the caller polls
        try:
            # its own connection, outside the pool: it stays open as long as the listener
            url = self.settings.db_listen_url or self.settings.database_url
            dsn = make_url(url).set(drivername="postgresql")
            connection = await asyncpg.connect(dsn.render_as_string(hide_password=False))
            await connection.add_listener(channel, lambda *_: callback())
            connection.add_termination_listener(lambda *_: callback())
        except Exception as error:  # an outage is logged once, by whoever meets it first
            if not is_unavailable(error):
                log.warning("not listening on %s (polling instead): %s", channel, error)
                refused = True
            if connection is not None:
                connection.terminate()
            connection = None

        def alive() -> bool:
            """Whether it listens (or was refused for good): False while the database cannot
            be reached, or once the connection is lost, so that the caller listens again."""
            return refused or (connection is not None and not connection.is_closed())

        try:
            yield alive
        finally:
            if connection is not None:
                connection.terminate()

    async def connect(self) -> None:
        if self._engine is None:
            self._engine = create_engine(self.settings)
            event.listen(self._engine.sync_engine, "connect", self._connected)
            # Every statement of ours is complete on its own (ownership in the WHERE clause,
            # INSERT/UPDATE/DELETE ... RETURNING), so requests run in autocommit: one round
            # trip per statement, no BEGIN/COMMIT/ROLLBACK chatter around it.
            self._autocommit = self._engine.execution_options(isolation_level="AUTOCOMMIT")

    def pool_status(self) -> tuple[int, int, int] | None:
        """The pool's size, connections checked out and overflow (None: not connected, or a
        pool that keeps no count)."""
        pool = self._engine.pool if self._engine is not None else None
        if not isinstance(pool, QueuePool):
            return None
        return pool.size(), pool.checkedout(), pool.overflow()

    def unavailable(self, error: BaseException) -> None:
        """`error` (one `is_unavailable` accepts) was met: logged if it starts an outage."""
        self.outage.failed(driver_error(error))

    def _connected(self, _dbapi_connection: Any, _record: Any) -> None:
        self.outage.recovered()

    async def dispose(self) -> None:
        """Close the pool's connections, waiting at most DISPOSE_SECONDS: closing one waits for
        the server's answer, which a connection cut silently (a firewall's idle drop) never
        gets; what is left then closes with the process."""
        engine, self._engine, self._autocommit = self._engine, None, None
        if engine is None:
            return
        try:
            await asyncio.wait_for(engine.dispose(), DISPOSE_SECONDS)
        except TimeoutError:
            log.warning(
                "database connections not closed within %s s (the server does not answer)",
                DISPOSE_SECONDS,
            )

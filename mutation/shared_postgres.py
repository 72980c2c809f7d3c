"""Pytest plugin of `make mutate`: every mutant's test session uses the one PostgreSQL server
that mutation/run.py started, in databases of its own (dropped at the end of the session),
instead of starting a server of its own; that start was most of a short session's time.

Redis stays one server per session (tests flush it, stop it and start it again); the pid of
every server a session starts is written to the run's list, so that the run can stop those left
behind by a session that its timeout killed. Without the run's variables this does nothing.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests import services

PORT = os.environ.get("TASKAPI_MUTATE_PG_PORT", "")
BINDIR = os.environ.get("TASKAPI_MUTATE_PG_BINDIR", "")
PID_LIST = os.environ.get("TASKAPI_MUTATE_PID_LIST", "")


class SessionDatabases(services.PostgresServer):
    """The shared server as one session sees it: the databases it creates carry its pid."""

    created: list[str]

    def create_database(self, name: str) -> str:
        unique = f"{name}_{os.getpid()}"
        self.created.append(unique)
        return super().create_database(unique)

    def drop_created(self) -> None:
        for name in self.created:
            subprocess.run(
                [str(self.bindir / "dropdb"), "-h", "127.0.0.1", "-p", str(self.port)]
                + ["-U", "postgres", "--force", "--if-exists", name],
                check=False,
                capture_output=True,
            )


@contextlib.contextmanager
def shared_postgres() -> Iterator[services.PostgresServer]:
    server = SessionDatabases(
        port=int(PORT),
        directory=Path(BINDIR),
        process=None,  # type: ignore[arg-type]  # owned by mutation/run.py, never stopped here
        bindir=Path(BINDIR),
    )
    server.created = []
    try:
        yield server
    finally:
        server.drop_created()


_start_redis = services.RedisServer.start


def _start_and_list(self: services.RedisServer) -> None:
    _start_redis(self)
    if self.process is not None:
        with open(PID_LIST, "a") as pids:
            pids.write(f"{self.process.pid} {self.directory}\n")


if PORT and BINDIR:
    services.running_postgres = shared_postgres
if PID_LIST:
    services.RedisServer.start = _start_and_list  # type: ignore[method-assign]

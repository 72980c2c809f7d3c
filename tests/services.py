"""Real PostgreSQL and Redis servers for the suite, started from the machine's binaries.

Each server runs on a free loopback port in a throwaway directory and is stopped at the end of
the session. Where a binary is missing the tests that need it skip with a loud reason, unless
TASKAPI_REQUIRE_SERVICES=1 (CI), where they fail.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

REQUIRE_SERVICES = os.environ.get("TASKAPI_REQUIRE_SERVICES") == "1"
START_DEADLINE_SECONDS = 60.0


def unavailable(reason: str) -> None:
    """Skip loudly, or fail when the services are required."""
    message = f"SERVICE UNAVAILABLE: {reason}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (TASKAPI_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _run_as() -> tuple[int, int] | tuple[None, None]:
    """The user and group PostgreSQL runs as: it refuses root, so `nobody` then (else None:
    the current user)."""
    if os.geteuid() != 0:
        return None, None
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


def poll(check: Callable[[], object], what: str, deadline: float = START_DEADLINE_SECONDS) -> None:
    """Call `check()` until it returns true, or fail after `deadline` seconds."""
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


@dataclasses.dataclass
class PostgresServer:
    """A postgres on a fixed free port; `shutdown()` and `start()` again restart it on the same
    data directory, as an operator's restart does."""

    port: int
    directory: Path
    bindir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        subprocess.run(
            [str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port)]
            + ["-U", "postgres", name],
            check=True,
            capture_output=True,
        )
        return self.url(name)

    def start(self) -> None:
        """Start the server on its data directory and wait until it accepts connections."""
        user, group = _run_as()
        log = open(self.directory / "postgres.log", "ab")  # noqa: SIM115 - closed below
        process = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port)]
            + ["-k", str(self.directory), "-c", "listen_addresses=127.0.0.1"]
            + ["-c", "fsync=off", "-c", "full_page_writes=off"]
            + ["-c", "synchronous_commit=off", "-c", "max_connections=200"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user,
            group=group,
        )
        log.close()
        self.process = process
        isready = [str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]

        def accepting() -> bool:
            if process.poll() is not None:
                raise RuntimeError((self.directory / "postgres.log").read_text()[-2000:])
            return subprocess.run(isready, check=False).returncode == 0

        poll(accepting, "PostgreSQL to accept connections")

    def shutdown(self) -> None:
        """A fast shutdown (SIGINT: sessions are ended, the data is kept), waited for."""
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=START_DEADLINE_SECONDS)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    postgres = find_binary("postgres")
    if postgres is None or find_binary("initdb") is None:
        unavailable("the `postgres` and `initdb` binaries are not installed")
    bindir = Path(postgres).resolve().parent
    directory = Path(tempfile.mkdtemp(prefix="taskapi-pg-"))
    user, group = _run_as()
    if user is not None and group is not None:
        os.chown(directory, user, group)
    server = PostgresServer(port=free_port(), directory=directory, bindir=bindir)
    try:
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(server.data), "-U", "postgres", "--auth=trust"]
            + ["-E", "UTF8", "--no-sync", "--no-instructions"],
            check=True,
            capture_output=True,
            user=user,
            group=group,
        )
        server.start()
        yield server
    finally:
        server.stop()


@dataclasses.dataclass
class RedisServer:
    """A redis-server on a fixed free port; `stop()` and `start()` again simulate an outage."""

    binary: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    options: tuple[str, ...] = ()  # more of redis-server's options, e.g. --replicaof

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
            + ["--protected-mode", "no", *self.options],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

        def answering() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError((self.directory / "redis.log").read_text()[-2000:])
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    return sock.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        poll(answering, "redis-server to answer PING")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Redis frozen (SIGSTOP) while the block runs, then resumed (SIGCONT): it keeps its
        data, and its clients' calls time out meanwhile."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            assert sock.recv(16).startswith(b"+OK")


@contextlib.contextmanager
def running_redis() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("the `redis-server` binary is not installed (apt-get install redis-server)")
    directory = Path(tempfile.mkdtemp(prefix="taskapi-redis-"))
    server = RedisServer(binary=str(binary), port=free_port(), directory=directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def until(
    check: Callable[[], object], what: str, deadline: float = START_DEADLINE_SECONDS
) -> None:
    """Await `check()` (sync or async) until it is true, or fail after `deadline` seconds."""
    import asyncio
    import inspect

    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        outcome = check()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def within_turns(check: Callable[[], object], turns: int = 200) -> None:
    """Let the other tasks run until `check()` holds, for at most `turns` turns of the loop (for
    what other tasks do without waiting on anything outside the process)."""
    import asyncio

    for _ in range(turns):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"not within {turns} turns of the loop")


async def redis_commands_during(
    redis_url: str, action: Callable[[], Awaitable[object]]
) -> list[str]:
    """The commands Redis received from clients while `action` ran, read with MONITOR (whose
    lines tell a script's own commands apart); a marker ends the reading."""
    from redis.asyncio import Redis

    marker = "end-of-observation"
    async with Redis.from_url(redis_url) as probe, probe.monitor() as monitor:
        await action()
        await probe.echo(marker)
        seen = []
        while True:
            line = await monitor.next_command()
            if line["command"] == f"ECHO {marker}":
                return seen
            if line["client_type"] != "lua" and not line["command"].startswith("CLIENT "):
                seen.append(line["command"].split(" ", 1)[0].upper())


def _owned_directory(prefix: str) -> Path:
    """A throwaway directory the servers that refuse root (`_run_as`) can write in."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    user, group = _run_as()
    if user is not None and group is not None:
        os.chown(directory, user, group)
    return directory


def _answering(port: int, process: subprocess.Popen[bytes], log: Path) -> Callable[[], bool]:
    """A check that the server on `port` accepts TCP connections (failing if it exited)."""

    def check() -> bool:
        if process.poll() is not None:
            raise RuntimeError(log.read_text()[-2000:] if log.exists() else "exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    return check


@dataclasses.dataclass
class PgBouncerServer:
    """A pgbouncer in transaction mode on a free port in front of a PostgresServer, its pool
    smaller than the clients a test brings (`pool_size` server connections per database)."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None


@contextlib.contextmanager
def running_pgbouncer(postgres: PostgresServer, pool_size: int = 4) -> Iterator[PgBouncerServer]:
    binary = find_binary("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if binary is None:
        unavailable("the `pgbouncer` binary is not installed (apt-get install pgbouncer)")
    assert binary is not None
    directory = _owned_directory("taskapi-pgbouncer-")
    server = PgBouncerServer(port=free_port(), directory=directory)
    (directory / "userlist.txt").write_text('"postgres" ""\n')
    (directory / "pgbouncer.ini").write_text(
        f"[databases]\n* = host=127.0.0.1 port={postgres.port}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {server.port}\n"
        f"unix_socket_dir =\nauth_type = trust\nauth_file = {directory}/userlist.txt\n"
        f"pool_mode = transaction\ndefault_pool_size = {pool_size}\nmin_pool_size = 0\n"
        f"reserve_pool_size = 0\nmax_client_conn = 1000\nmax_db_connections = {pool_size}\n"
        f"logfile = {directory}/pgbouncer.log\npidfile = {directory}/pgbouncer.pid\n"
        "ignore_startup_parameters = extra_float_digits\n"
    )
    user, group = _run_as()
    server.process = subprocess.Popen(
        [binary, str(directory / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        user=user,
        group=group,
    )
    try:
        poll(_answering(server.port, server.process, directory / "pgbouncer.log"), "pgbouncer")
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


SENTINEL_MASTER = "taskapi"


@dataclasses.dataclass
class SentinelGroup:
    """A primary, its replica and three sentinels (quorum 2) watching them, on free ports;
    a primary unreachable for `down_after_ms` is failed over to the replica."""

    primary: RedisServer
    replica: RedisServer
    sentinel_ports: list[int]
    directory: Path
    sentinels: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)

    @property
    def addresses(self) -> str:
        """TASKAPI_REDIS_SENTINELS' value."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def primary_port(self) -> int | None:
        """The port of the primary the first sentinel that answers names."""
        import redis

        for port in self.sentinel_ports:
            try:
                with redis.Redis(port=port, socket_timeout=0.5) as client:
                    address = client.sentinel_get_master_addr_by_name(SENTINEL_MASTER)
            except redis.RedisError:
                continue
            if address:
                return int(address[1])
        return None

    def _ready(self) -> bool:
        import redis

        with redis.Redis(port=self.replica.port, socket_timeout=0.5) as replica:
            if replica.info("replication").get("master_link_status") != "up":
                return False
        for port in self.sentinel_ports:
            with redis.Redis(port=port, socket_timeout=0.5) as client:
                state = client.sentinel_master(SENTINEL_MASTER)
            if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                return False
        return True

    def stop(self) -> None:
        for process in self.sentinels:
            process.kill()
            process.wait()
        self.sentinels = []
        self.primary.stop()
        self.replica.stop()


@contextlib.contextmanager
def running_sentinels(down_after_ms: int = 1000) -> Iterator[SentinelGroup]:
    binary = shutil.which("redis-server")
    sentinel = shutil.which("redis-sentinel")
    if binary is None or sentinel is None:
        unavailable(
            "the `redis-server` and `redis-sentinel` binaries are not installed "
            "(apt-get install redis-server redis-sentinel)"
        )
    assert binary is not None and sentinel is not None
    directory = Path(tempfile.mkdtemp(prefix="taskapi-sentinel-"))
    primary_dir, replica_dir = directory / "primary", directory / "replica"
    primary_dir.mkdir()
    replica_dir.mkdir()
    primary = RedisServer(binary=binary, port=free_port(), directory=primary_dir)
    replica = RedisServer(
        binary=binary,
        port=free_port(),
        directory=replica_dir,
        options=("--replicaof", "127.0.0.1", str(primary.port)),
    )
    group = SentinelGroup(primary, replica, [free_port() for _ in range(3)], directory)
    try:
        primary.start()
        replica.start()
        for i, port in enumerate(group.sentinel_ports):
            config = directory / f"sentinel{i}.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {directory}\n"
                f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {primary.port} 2\n"
                f"sentinel down-after-milliseconds {SENTINEL_MASTER} {down_after_ms}\n"
                f"sentinel failover-timeout {SENTINEL_MASTER} 5000\n"
                f"sentinel parallel-syncs {SENTINEL_MASTER} 1\n"
            )
            with (directory / f"sentinel{i}.log").open("ab") as log:
                group.sentinels.append(
                    subprocess.Popen(
                        [sentinel, str(config)],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        poll(group._ready, "the replica and the three sentinels to see each other")
        yield group
    finally:
        group.stop()
        shutil.rmtree(directory, ignore_errors=True)

"""How cost grows (`make bench-scale`): taskapi under more rows, and under more connections.

On a throwaway local deployment (PostgreSQL + Redis from the machine's binaries, migrations,
`bench/serve.sh`: two single-worker hypercorn processes, production settings, rate limits raised
by configuration):

- data sweep: the tasks table grows through `--sizes` (1,000 -> 100,000 -> 1,000,000 rows, over
  `--users` accounts). The benchmark user's 1,000 tasks are created through the API; every other
  row is bulk-loaded with COPY, among them one user's 100,000 tasks (from the 100,000 size on).
  At each size S1 (detail), S2 (list, status filter), S4 (mixed), and S2 at page 1 and at page
  1,000 of that user's tasks through the cursor; each with the response cache on (production)
  and off (every read reaches PostgreSQL).
- connection sweep, at the last size: S1 and S4 with `--connections` keep-alive connections;
  again without the in-flight limit (TASKAPI_MAX_REQUESTS_IN_FLIGHT=0; `--no-unlimited` skips
  it); then the same against the side-by-side harness's Flask seed and FastAPI peer, when its
  directory is given (`--peers-dir`, or BENCH_PEERS_DIR; skipped, saying so, otherwise).
- EXPLAIN (ANALYZE, BUFFERS) of the list and detail statements the domain sends (captured from
  `taskapi.domain.tasks` on a real connection) at the last size, and a py-spy profile of one
  server process during S1 at the most connections.

Writes bench/results/scale-<date>.md, scale-<date>.json and the charts scale-<date>-data.png
and scale-<date>-connections.png. Speed is measured here, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import run_bench
from run_bench import ROOT, Client, create_tasks, login, register, serving, write_ids

LUA = ROOT / "bench" / "lua"
SCRIPTS = {"S1": "s1_detail", "S2": "s2_list", "S4": "s4_mixed", "page": "s2_page"}
PEERS = (("flask-seed", "flask.target"), ("fastapi", "fastapi.target"))
HEAVY = "bench-heavy"  # the user who owns the bulk of the rows (the cursor's pages)
PAGE = 100  # the list's page size in the cursor runs (its maximum)
UNLIMITED = "taskapi, no limit"  # the connection sweep with TASKAPI_MAX_REQUESTS_IN_FLIGHT=0


# ------------------------------------------------------------------------------------ wrk


def raise_open_files(connections: int) -> str:
    """The soft RLIMIT_NOFILE up to the hard one (wrk and the servers inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < 2 * connections + 1000:
        sys.exit(
            f"the open-file limit ({wanted}) is too low for {connections} connections: "
            "raise the hard limit (ulimit -Hn, LimitNOFILE)"
        )
    return f"{soft} -> {wanted}"


def wrk(
    base: str,
    scenario: str,
    token: str,
    ids_file: Path,
    args: argparse.Namespace,
    connections: int,
    path: str = "",
    during: Any = None,
) -> dict[str, Any]:
    """One wrk run after its warm-up; `during(wrk_process)` is called while the measured run
    goes (a profile). Latencies are wrk's (coordinated-omission corrected), in ms."""
    env = {
        **os.environ,
        "BENCH_TOKEN": token,
        "BENCH_IDS": str(ids_file),
        "BENCH_LUA_DIR": str(LUA),
        "BENCH_PATH": path,
    }
    threads = min(args.threads, connections)
    command = ["wrk", "-t", str(threads), "-c", str(connections), "--timeout", f"{args.timeout}s"]
    command += ["-s", str(LUA / f"{SCRIPTS[scenario]}.lua"), base]
    if args.warmup:
        subprocess.run(
            [*command, "-d", f"{args.warmup}s"], env=env, capture_output=True, check=True
        )
    load = os.getloadavg()[0]
    process = subprocess.Popen(
        [*command, "-d", f"{args.seconds}s"], env=env, stdout=subprocess.PIPE, text=True
    )
    extra = during(process) if during else None
    out, _ = process.communicate()
    if process.returncode:
        raise RuntimeError(f"wrk failed ({process.returncode}): {out}")
    data = run_bench.benchjson(out)
    seconds = data["duration_us"] / 1e6
    return {
        "rps": data["requests"] / seconds,
        "p50": data["p50_us"] / 1000,
        "p99": data["p99_us"] / 1000,
        "p999": data["p999_us"] / 1000,
        "max": data["max_us"] / 1000,
        "requests": data["requests"],
        "errors": data["errors"],
        **{k: data[k] for k in ("err_connect", "err_read", "err_write", "err_timeout")},
        "non2xx": data["err_status"],
        "load1": round(load, 2),
        "connections": connections,
        "threads": threads,
        "extra": extra,
    }


# ------------------------------------------------------------------------- bulk loading


async def _load(url: str, work: Any) -> Any:
    import asyncpg

    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return await work(connection)
    finally:
        await connection.close()


def sql(url: str, work: Any) -> Any:
    return asyncio.run(_load(url, work))


def bulk_users(url: str, count: int, like: str) -> list[int]:
    """`count` accounts with COPY (with the password hash of `like`); their ids."""
    from taskapi.domain.names import canonical

    async def work(connection: Any) -> list[int]:
        password_hash = await connection.fetchval(
            "SELECT password_hash FROM users WHERE username = $1", like
        )
        names = [f"bulk{i:05d}" for i in range(count)]
        records = [
            (n, f"{n}@example.com", canonical(n), canonical(f"{n}@example.com"), password_hash)
            for n in names
        ]
        columns = ["username", "email", "username_canonical", "email_canonical", "password_hash"]
        await connection.copy_records_to_table("users", records=records, columns=columns)
        rows = await connection.fetch("SELECT id FROM users WHERE username LIKE 'bulk%'")
        return [int(r["id"]) for r in rows]

    return sql(url, work)


def bulk_tasks(url: str, owners: list[int], count: int, seed: int) -> float:
    """`count` tasks spread over `owners` (round robin), with COPY; the seconds it took."""
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    year = 365 * 24 * 3600

    def records(start: int, stop: int) -> Iterator[tuple[Any, ...]]:
        for i in range(start, stop):
            created = now - dt.timedelta(seconds=rng.randrange(year), microseconds=i % 1000)
            status = "completed" if i % 3 == 0 else "pending"
            title = f"bulk task {i}"
            yield (title, "bulk-loaded", status, created, created, owners[i % len(owners)])

    async def work(connection: Any) -> float:
        started = time.monotonic()
        columns = ["title", "description", "status", "created_at", "updated_at", "owner_id"]
        chunk = 200_000
        for start in range(0, count, chunk):
            await connection.copy_records_to_table(
                "tasks", records=records(start, min(count, start + chunk)), columns=columns
            )
        return time.monotonic() - started

    return sql(url, work)


def analyze(url: str) -> None:
    async def work(connection: Any) -> None:
        await connection.execute("VACUUM (ANALYZE) tasks")
        await connection.execute("VACUUM (ANALYZE) users")
        await connection.execute("CHECKPOINT")

    sql(url, work)


def table_sizes(url: str) -> dict[str, Any]:
    async def work(connection: Any) -> dict[str, Any]:
        return dict(
            await connection.fetchrow(
                "SELECT (SELECT count(*) FROM tasks) AS tasks,"
                " (SELECT count(*) FROM users) AS users,"
                " pg_size_pretty(pg_table_size('tasks')) AS table_size,"
                " pg_size_pretty(pg_indexes_size('tasks')) AS indexes_size"
            )
        )

    return sql(url, work)


def page_cursor(url: str, owner: int, page: int) -> str:
    """The cursor token that `GET /api/tasks/?limit=100` hands out for page `page` (from 2)."""
    from taskapi.domain.pagination import Cursor

    async def work(connection: Any) -> Any:
        return await connection.fetchrow(
            "SELECT created_at, id FROM tasks WHERE owner_id = $1 "
            "ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT 1",
            owner,
            (page - 1) * PAGE - 1,
        )

    row = sql(url, work)
    return Cursor(created_at=row["created_at"], id=row["id"]).encode()


def check_page(base: str, token: str, path: str, first_id_expected: int | None = None) -> int:
    """The page answers 200 with a full page; its first task's id."""
    status, body = Client(base).call("GET", path, token=token)
    if status != 200 or not isinstance(body, dict) or len(body["data"]) != PAGE:
        raise RuntimeError(f"GET {path}: {status} {str(body)[:200]}")
    first = int(body["data"][0]["id"])
    if first_id_expected is not None and first != first_id_expected:
        raise RuntimeError(f"GET {path}: first task {first}, expected {first_id_expected}")
    return first


# ------------------------------------------------------------------------------ EXPLAIN


def explain_domain_queries(url: str, bench: int, heavy: int, task_id: int, cursor: str) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the statements taskapi.domain.tasks sends for S1, S2 and
    the cursor's page, captured as they are executed on a real connection."""
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import create_async_engine

    from taskapi.domain import tasks
    from taskapi.domain.pagination import Cursor
    from taskapi.domain.viewer import Viewer

    async def work() -> str:
        engine = create_async_engine(url)
        sent: list[tuple[str, Any]] = []

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            if not statement.startswith("EXPLAIN"):
                sent.append((statement, parameters))

        out = []
        try:
            async with engine.connect() as connection:
                runs = (
                    ("S1: GET /api/tasks/<id> (get_task_for)", None),
                    ("S2: GET /api/tasks/?status=pending (list_tasks)", None),
                    ("page 1 of the 100,000-task user (list_tasks, limit 100)", None),
                    ("page 1,000 of the 100,000-task user (list_tasks, cursor)", None),
                )
                await tasks.get_task_for(connection, Viewer(bench, "user"), task_id)
                await tasks.list_tasks(
                    connection, Viewer(bench, "user"), status="pending", limit=100, after=None
                )
                await tasks.list_tasks(
                    connection, Viewer(heavy, "user"), status=None, limit=PAGE, after=None
                )
                await tasks.list_tasks(
                    connection,
                    Viewer(heavy, "user"),
                    status=None,
                    limit=PAGE,
                    after=Cursor.decode(cursor),
                )
                statements = list(sent)
                for (title, _), (statement, parameters) in zip(runs, statements, strict=True):
                    result = await connection.exec_driver_sql(
                        "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
                    )
                    plan = "\n".join(row[0] for row in result)
                    out.append(
                        f"#### {title}\n\n```sql\n{statement}\n-- parameters: {parameters}\n```\n"
                        f"\n```\n{plan}\n```\n"
                    )
        finally:
            await engine.dispose()
        return "\n".join(out)

    return asyncio.run(work())


# ------------------------------------------------------------------------------ profile


def profiler(seconds: int, native: bool = False) -> Any:
    """A `during` hook for wrk(): py-spy records the first server process (its hypercorn and
    the worker it spawns) for `seconds`;
    returns the top functions by own samples and by samples under them."""
    py_spy = ROOT / ".venv" / "bin" / "py-spy"

    def during(pids: list[int]) -> Any:
        def hook(_process: subprocess.Popen[str]) -> Any:
            if not py_spy.exists() or not pids:
                return None
            out = Path(tempfile.mkstemp(prefix="taskapi-scale-profile-", suffix=".txt")[1])
            run = subprocess.run(
                [str(py_spy), "record", "--pid", str(pids[0]), "--subprocesses"]
                + ["--duration", str(seconds)]
                + ["--rate", "100", "--format", "raw", "--output", str(out)]
                + (["--native"] if native else ["--nonblocking"]),
                capture_output=True,
                text=True,
            )
            if run.returncode or not out.stat().st_size:
                return {"error": (run.stderr or run.stdout)[-500:]}
            own: collections.Counter[str] = collections.Counter()
            under: collections.Counter[str] = collections.Counter()
            total = 0
            for line in out.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                frames = [f.split(" (")[0] + " (" + f.split(" (")[-1] for f in stack.split(";")]
                n = int(count)
                total += n
                own[frames[-1]] += n
                for frame in set(frames):
                    under[frame] += n
            plumbing = ("process ", "multiprocessing", "spawn_main", "<module>", "asyncio/")
            return {
                "samples": total,
                "own": own.most_common(15),
                "under": [x for x in under.most_common(60) if not any(p in x[0] for p in plumbing)][
                    :20
                ],
            }

        return hook

    return during


def sampler(seconds: int, env: dict[str, str], pids: list[int]) -> Any:
    """A `during` hook for wrk(): halfway through the run, what the deployment holds open: Redis
    clients, PostgreSQL backends, the server processes' file descriptors and resident memory."""

    def hook(_process: subprocess.Popen[str]) -> dict[str, int]:
        time.sleep(seconds / 2)  # the middle of a timed run, not a synchronization
        import redis as redis_sync

        client = redis_sync.Redis.from_url(env["REDIS_URL"])
        try:
            # redis-py types the sync client's answers as the async one's too
            info: dict[str, Any] = client.info("clients")  # type: ignore[assignment]
            redis_clients = int(info["connected_clients"])
        finally:
            client.close()

        async def backends(connection: Any) -> int:
            return int(await connection.fetchval("SELECT count(*) FROM pg_stat_activity"))

        fds = rss = 0
        for pid in pids:
            with contextlib.suppress(OSError):
                fds += len(os.listdir(f"/proc/{pid}/fd"))
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1]) // 1024
        return {
            "redis_clients": redis_clients,
            "pg_backends": sql(env["DATABASE_URL"], backends),
            "server_fds": fds,
            "server_rss_mib": rss,
        }

    return hook


# ------------------------------------------------------------------------- the sweeps


def server_pids(pids: list[int]) -> list[int]:
    """The hypercorn processes among serve.sh's group, and the workers they spawned (not the
    arq worker)."""
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"hypercorn" in command or b"multiprocessing" in command:
                found.append(pid)
    return found


def data_sweep(
    args: argparse.Namespace, env: dict[str, str], url: str, results: list[dict[str, Any]]
) -> dict[str, Any]:
    """Grows the table through args.sizes; at each, the scenarios with the cache on and off."""
    state: dict[str, Any] = {}
    with serving(env) as (base, _pids):
        register(base, args.username, args.password)
        register(base, HEAVY, args.password)
        token = login(base, args.username, args.password)
        ids = create_tasks(base, token, args.api_tasks)
    state["ids_file"] = write_ids(ids)
    state["task_id"] = ids[len(ids) // 2]

    async def ids_of(connection: Any) -> tuple[int, int]:
        bench = await connection.fetchval("SELECT id FROM users WHERE username=$1", args.username)
        heavy = await connection.fetchval("SELECT id FROM users WHERE username=$1", HEAVY)
        return int(bench), int(heavy)

    state["bench"], state["heavy"] = sql(url, ids_of)
    fillers = bulk_users(url, args.users - 2, args.username)
    print(f"  {args.api_tasks} tasks through the API, {len(fillers)} accounts with COPY")
    loaded, heavy_loaded = args.api_tasks, 0
    for size in args.sizes:
        if size >= args.heavy_tasks and not heavy_loaded:
            took = bulk_tasks(url, [state["heavy"]], args.heavy_tasks, seed=1)
            heavy_loaded = args.heavy_tasks
            loaded += heavy_loaded
            print(f"  COPY {heavy_loaded} tasks of {HEAVY}: {took:.1f} s")
        if size > loaded:
            took = bulk_tasks(url, fillers, size - loaded, seed=size)
            print(f"  COPY {size - loaded} tasks over {len(fillers)} accounts: {took:.1f} s")
            loaded = size
        analyze(url)
        sizes = table_sizes(url)
        print(f"size {size}: {sizes}")
        pages = {}
        if heavy_loaded:
            last = heavy_loaded // PAGE
            pages = {
                "page 1": f"/api/tasks/?limit={PAGE}",
                f"page {last}": f"/api/tasks/?limit={PAGE}&"
                + f"cursor={page_cursor(url, state['heavy'], last)}",
            }
            state["last_page"] = last
            state["last_cursor"] = pages[f"page {last}"].rsplit("=", 1)[1]
        for cache in ("on", "off") if args.data_runs else ():
            with serving(
                {**env, "TASKAPI_CACHE_ENABLED": "true" if cache == "on" else "false"}
            ) as (
                base,
                _pids,
            ):
                token = login(base, args.username, args.password)
                heavy_token = login(base, HEAVY, args.password) if pages else ""
                runs: list[tuple[str, str, str]] = [(s, token, "") for s in ("S1", "S2", "S4")]
                runs += [(name, heavy_token, path) for name, path in pages.items()]
                for name, who, path in runs:
                    if path:
                        check_page(base, who, path)
                    scenario = "page" if path else name
                    result = wrk(
                        base, scenario, who, state["ids_file"], args, args.data_connections, path
                    )
                    row = {"sweep": "data", "system": "taskapi", "scenario": name, "size": size}
                    results.append({**row, "cache": cache, "rows": sizes["tasks"], **result})
                    show(results[-1])
    state["sizes"] = table_sizes(url)
    return state


def show(row: dict[str, Any]) -> None:
    where = f"size {row['size']}" if row["sweep"] == "data" else f"-c{row['connections']}"
    cache = f" cache {row['cache']}" if row.get("cache") else ""
    print(
        f"  {row['system']:<10} {row['scenario']:<10} {where:<14}{cache:<10}"
        f"{row['rps']:>8.0f} req/s  p50 {row['p50']:>8.2f}  p99 {row['p99']:>8.2f}  "
        f"p99.9 {row['p999']:>8.2f} ms  errors {row['errors']} (connect {row['err_connect']}, "
        f"read {row['err_read']}, write {row['err_write']}, timeout {row['err_timeout']}, "
        f"non-2xx {row['non2xx']})  load {row['load1']}",
        flush=True,
    )


def sweep(
    args: argparse.Namespace,
    base: str,
    token: str,
    state: dict[str, Any],
    results: list[dict[str, Any]],
    system: str,
    hook: Any = lambda: None,
) -> None:
    """S1 and S4 at each connection count against one deployment; `hook()` makes each run's
    `during` hook (a sampler)."""
    for connections in args.connections:
        for scenario in ("S1", "S4"):
            result = wrk(base, scenario, token, state["ids_file"], args, connections, during=hook())
            results.append(
                {"sweep": "connections", "system": system, "scenario": scenario, **result}
            )
            show(results[-1])


def connection_sweep(
    args: argparse.Namespace,
    env: dict[str, str],
    state: dict[str, Any],
    results: list[dict[str, Any]],
) -> dict[str, Any] | None:
    """S1 and S4 against taskapi (cache on) at each connection count; then S1 at the last,
    profiled; then the sweep again with TASKAPI_MAX_REQUESTS_IN_FLIGHT=0 (no in-flight limit),
    as the system "taskapi, no limit"."""
    profile = None
    with serving(env) as (base, pids):
        token = login(base, args.username, args.password)
        servers = server_pids(pids)
        sweep(
            args,
            base,
            token,
            state,
            results,
            "taskapi",
            lambda: sampler(args.seconds, env, servers),
        )
        if args.profile:
            hook = profiler(max(1, args.seconds - 2), args.native)(servers)
            result = wrk(
                base, "S1", token, state["ids_file"], args, args.connections[-1], during=hook
            )
            profile = {
                "scenario": "S1",
                "connections": args.connections[-1],
                **(result["extra"] or {}),
            }
    if args.unlimited:
        unlimited = {**env, "TASKAPI_MAX_REQUESTS_IN_FLIGHT": "0"}
        with serving(unlimited) as (base, pids):
            sweep(args, base, login(base, args.username, args.password), state, results, UNLIMITED)
    return profile


def target_file(path: Path) -> dict[str, str]:
    """A harness target file's settings (it is sourced bash)."""
    keys = ("NAME", "PORT", "PREPARE", "SCHEMA", "START", "READY_PATH")
    out = subprocess.run(
        [
            "bash",
            "-c",
            'source "$1"; printf "%s\\0" ' + " ".join(f'"${{{k}:-}}"' for k in keys),
            "_",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    return dict(zip(keys, out, strict=False))


def peer_sweep(
    args: argparse.Namespace,
    pg: Any,
    redis_url: str,
    state: dict[str, Any],
    results: list[dict[str, Any]],
) -> list[str]:
    """The connection sweep against each harness peer, each on its own database."""
    from tests.services import free_port, poll

    notes = []
    peers_dir = Path(args.peers_dir)
    for number, (name, target_name) in enumerate(PEERS, start=1):
        target = target_file(peers_dir / "targets" / target_name)
        port = free_port()
        database = pg.create_database(f"peer_{number}")
        plain = database.replace("postgresql+asyncpg://", "postgresql://")
        parts = plain.split("@", 1)[1]
        host_port, dbname = parts.split("/", 1)
        host, pg_port = host_port.split(":")
        scratch = Path(tempfile.mkdtemp(prefix=f"taskapi-scale-{name}-"))
        hook_env = {
            **os.environ,
            "PORT": str(port),
            "WORKERS": str(args.workers),
            "DATABASE_URL": database,
            "PG_URL": plain,
            "PGHOST": host,
            "PGPORT": pg_port,
            "PGUSER": "postgres",
            "PGDATABASE": dbname,
            "REDIS_URL": f"{redis_url.rsplit('/', 1)[0]}/{number + 1}",
            "BENCH_ROOT": str(peers_dir),
            # where the harness keeps the peers' virtualenvs (its own default)
            "BENCH_WORK": os.environ.get("BENCH_WORK", f"{tempfile.gettempdir()}/taskapi-bench"),
            "TARGET_NAME": name,
            "TARGET_DIR": str(scratch),
        }
        log = open(scratch / "server.log", "ab")  # noqa: SIM115 - the peer writes it until stopped
        for hook in ("PREPARE", "SCHEMA"):
            if target.get(hook):
                done = subprocess.run(
                    ["bash", "-c", target[hook]],
                    cwd=peers_dir,
                    env=hook_env,
                    stdout=log,
                    stderr=log,
                )
                if done.returncode:
                    notes.append(
                        f"{name}: its {hook} hook failed (log {scratch}/server.log); skipped"
                    )
                    break
        else:
            server = subprocess.Popen(
                ["bash", "-c", target["START"]],
                cwd=peers_dir,
                env=hook_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            base = f"http://127.0.0.1:{port}"

            def up(base: str = base, ready: str = target.get("READY_PATH") or "/") -> bool:
                with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
                    Client(base).call("GET", ready)
                    return True
                return False

            try:
                poll(up, name, deadline=120)
                client = peers_dir / "lib" / "bench_client.py"
                subprocess.run(
                    [sys.executable, str(client), "setup", "--base", base, "--out", str(scratch)]
                    + ["--tasks", str(args.api_tasks)],
                    check=True,
                    capture_output=True,
                )
                token = (scratch / "token").read_text().strip()
                ids_file = scratch / "ids"
                for connections in args.connections:
                    for scenario in ("S1", "S4"):
                        result = wrk(base, scenario, token, ids_file, args, connections)
                        row = {"sweep": "connections", "system": name, "scenario": scenario}
                        results.append({**row, **result})
                        show(results[-1])
            finally:
                os.killpg(server.pid, 15)
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(server.pid, 9)
                    server.wait()
        log.close()
    return notes


# ------------------------------------------------------------------------------ report


def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = int(line.split()[1]) // (1024 * 1024)
    return f"{os.cpu_count()} cores ({cpu}), {memory} GiB, Linux {platform.release()}"


def charts(results: list[dict[str, Any]], out: Path, stem: str) -> list[str]:
    """PNG charts: req/s and p99 against data size (one line per scenario and cache setting),
    and against connections (one line per system, S1 and S4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    data = [r for r in results if r["sweep"] == "data"]
    if data:
        figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for (scenario, cache), rows in _groups(data, "scenario", "cache").items():
            xs = [r["rows"] for r in rows]
            style = "-" if cache == "on" else "--"
            label = f"{scenario}, cache {cache}"
            axes[0].plot(xs, [r["rps"] for r in rows], style, marker="o", label=label)
            axes[1].plot(xs, [r["p99"] for r in rows], style, marker="o", label=label)
        _axes(axes, "rows in the tasks table")
        axes[0].legend(fontsize=7)
        figure.suptitle(f"taskapi: cost against data size ({stem})")
        figure.tight_layout()
        path = out / f"{stem}-data.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path.name)
    conns = [r for r in results if r["sweep"] == "connections"]
    if conns:
        figure, axes = plt.subplots(2, 2, figsize=(12, 8))
        for row_number, scenario in enumerate(("S1", "S4")):
            for (system,), rows in _groups(
                [r for r in conns if r["scenario"] == scenario], "system"
            ).items():
                xs = [r["connections"] for r in rows]
                axes[row_number][0].plot(xs, [r["rps"] for r in rows], marker="o", label=system)
                answered = [r for r in rows if r["requests"]]  # no answer: no latency to plot
                axes[row_number][1].plot(
                    [r["connections"] for r in answered],
                    [r["p99"] for r in answered],
                    marker="o",
                    label=system,
                )
            _axes(axes[row_number], "concurrent keep-alive connections", scenario)
            axes[row_number][0].legend(fontsize=8)
        figure.suptitle(f"cost against connections ({stem})")
        figure.tight_layout()
        path = out / f"{stem}-connections.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path.name)
    return written


def _groups(rows: list[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    return groups


def _axes(axes: Any, xlabel: str, title: str = "") -> None:
    for axis, ylabel in zip(axes, ("req/s", "p99 latency (ms)"), strict=True):
        axis.set_xscale("log")
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.grid(True, which="both", alpha=0.3)
        if title:
            axis.set_title(title)
    axes[1].set_yscale("log")


def targets(data: list[dict[str, Any]], conns: list[dict[str, Any]]) -> list[str]:
    """Each target of the issue against this run's figures: met or missed, with the numbers."""
    out = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    for (scenario, cache), rows in _groups(data, "scenario", "cache").items():
        if len(rows) < 2 or scenario.startswith("page"):
            continue
        ratio = rows[-1]["rps"] / rows[0]["rps"]
        out.append(
            f"- {scenario}, cache {cache}, {rows[-1]['rows']:,} rows against {rows[0]['rows']:,}:"
            f" {rows[-1]['rps']:.0f} / {rows[0]['rps']:.0f} req/s = {ratio:.2f} (within 15 %: "
            f"{verdict(ratio >= 0.85)})"
        )
    pages = [r for r in data if r["scenario"].startswith("page")]
    if pages:
        last_size = pages[-1]["size"]
        for (cache,), rows in _groups(
            [r for r in pages if r["size"] == last_size], "cache"
        ).items():
            if len(rows) == 2:
                ratio = rows[1]["rps"] / rows[0]["rps"]
                out.append(
                    f"- {rows[1]['scenario']} against page 1, cache {cache}, at {last_size:,}: "
                    f"{ratio:.2f} (within 15 %: {verdict(ratio >= 0.85)})"
                )
    for (scenario,), rows in _groups(
        [r for r in conns if r["system"] == "taskapi"], "scenario"
    ).items():
        first, last = rows[0], rows[-1]
        if first is last:
            continue
        ratio = last["rps"] / first["rps"]
        socket_errors = sum(last[k] for k in ("err_connect", "err_read", "err_write"))
        out.append(
            f"- {scenario} at {last['connections']:,} connections: {last['errors']} errors "
            f"({socket_errors} socket, {last['non2xx']} non-2xx) and {last['err_timeout']} "
            f"timeouts ({verdict(last['errors'] == 0 and last['err_timeout'] == 0)}); p99 "
            f"{last['p99']:.0f} ms (under 2 s: {verdict(last['p99'] < 2000)}); "
            f"{last['rps']:.0f} / {first['rps']:.0f} req/s at {first['connections']} = "
            f"{ratio:.2f} (within 20 %: {verdict(ratio >= 0.8)})"
        )
    return out


def report(
    args: argparse.Namespace,
    results: list[dict[str, Any]],
    state: dict[str, Any],
    explain: str,
    profile: dict[str, Any] | None,
    notes: list[str],
    written: list[str],
    started: dt.datetime,
    load_before: str,
) -> str:
    took = (dt.datetime.now(dt.UTC) - started).total_seconds() / 60
    lines = [
        f"# How cost grows: taskapi at scale, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {machine()}; load average before the run {load_before}; the run took "
        f"{took:.0f} min. `make bench-scale` (bench/scale.py): two single-worker hypercorn "
        "processes (bench/serve.sh, production settings, rate limits raised), PostgreSQL and "
        "Redis on the same machine, wrk on it too (everything shares the cores). "
        f"wrk -t{args.threads}, {args.seconds} s per run after a {args.warmup} s warm-up, "
        f"--timeout {args.timeout}s; latencies are wrk's (coordinated-omission corrected). "
        f"Data sweep at {args.data_connections} connections.",
        "",
        *[f"![{name}]({name})" for name in written],
        "",
        "## Data size",
        "",
        f"Rows: the benchmark user's {args.api_tasks} tasks (through the API), then COPY: "
        f"{args.heavy_tasks} tasks of one user (the cursor's pages, from the "
        f"{args.heavy_tasks:,} size on) and the rest over {args.users - 2} other accounts. "
        "`page N`: `GET /api/tasks/?limit=100[&cursor=…]` of that user. Cache on is production; "
        "cache off (TASKAPI_CACHE_ENABLED=false) sends every read to PostgreSQL.",
        "",
        "| scenario | cache | rows | req/s | p50 ms | p99 ms | p99.9 ms | errors | vs first size |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    data = [r for r in results if r["sweep"] == "data"]
    for (_scenario, _cache), rows in _groups(data, "scenario", "cache").items():
        for r in rows:
            ratio = f"{r['rps'] / rows[0]['rps']:.2f}" if rows[0]["rps"] else "-"
            lines.append(
                f"| {r['scenario']} | {r['cache']} | {r['rows']:,} | {r['rps']:.0f} | "
                f"{r['p50']:.2f} | {r['p99']:.2f} | {r['p999']:.2f} | {r['errors']} | {ratio} |"
            )
    pages = [r for r in data if r["scenario"].startswith("page")]
    if pages:
        lines += ["", "Cursor, last page against page 1 (req/s):", ""]
        for (size, cache), rows in _groups(pages, "size", "cache").items():
            if len(rows) == 2:
                lines.append(
                    f"- {size:,} rows, cache {cache}: {rows[1]['rps']:.0f} / {rows[0]['rps']:.0f}"
                    f" = {rows[1]['rps'] / rows[0]['rps']:.2f}"
                )
    lines += [
        "",
        "## Connections",
        "",
        f"At {state['sizes']['tasks']:,} rows for taskapi (cache on); the peers of the "
        f"side-by-side harness on their own {args.api_tasks} tasks each. `{UNLIMITED}`: taskapi "
        "with TASKAPI_MAX_REQUESTS_IN_FLIGHT=0 (every request worked on at once; production's "
        "default lets 64 a process in, the rest wait in arrival order). errors = connect + "
        "read + write + timeout + non-2xx (wrk).",
        "",
        "| system | scenario | connections | req/s | p50 ms | p99 ms | p99.9 ms | connect | read | "
        "write | timeout | non-2xx | vs 64 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    conns = [r for r in results if r["sweep"] == "connections"]
    for (_system, _scenario), rows in _groups(conns, "system", "scenario").items():
        for r in rows:
            ratio = f"{r['rps'] / rows[0]['rps']:.2f}" if rows[0]["rps"] else "-"
            lines.append(
                f"| {r['system']} | {r['scenario']} | {r['connections']:,} | {r['rps']:.0f} | "
                f"{r['p50']:.2f} | {r['p99']:.2f} | {r['p999']:.2f} | {r['err_connect']} | "
                f"{r['err_read']} | {r['err_write']} | {r['err_timeout']} | {r['non2xx']} | "
                f"{ratio} |"
            )
    lines += [f"- {note}" for note in notes]
    lines += [
        f"- {r['system']} {r['scenario']} at {r['connections']:,} connections completed no "
        f"request in {args.seconds} s (wrk counts no error for a connection that is never "
        "answered): its latencies are not figures"
        for r in conns
        if not r["requests"]
    ]
    lines += ["", "## Targets (issue 23)", "", *targets(data, conns)]
    held = [r for r in conns if r["system"] == "taskapi" and r.get("extra")]
    if held:
        lines += [
            "",
            "What taskapi's deployment held open halfway through each run (both server "
            "processes, each a hypercorn and its worker):",
            "",
            "| scenario | connections | Redis clients | PostgreSQL backends | server fds | "
            "server RSS MiB |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in held:
            e = r["extra"]
            lines.append(
                f"| {r['scenario']} | {r['connections']:,} | {e['redis_clients']} | "
                f"{e['pg_backends']} | {e['server_fds']} | {e['server_rss_mib']} |"
            )
    lines += ["", f"## The statements at {state['sizes']['tasks']:,} rows", ""]
    lines += [
        f"Table {state['sizes']['table_size']}, its indexes {state['sizes']['indexes_size']}; "
        "the statements as taskapi.domain.tasks sends them (captured on a real connection), "
        "with their parameters, then EXPLAIN (ANALYZE, BUFFERS).",
        "",
        explain,
    ]
    if profile:
        lines += [
            "",
            f"## Profile: one server process during {profile['scenario']} at "
            f"{profile['connections']:,} connections",
            "",
        ]
        if "error" in profile:
            lines.append(f"py-spy could not record: {profile['error']}")
        else:
            total = profile["samples"] or 1
            lines += [f"py-spy, {profile['samples']} samples. Own time:", ""]
            lines += [f"- {100 * n / total:.1f} % {frame}" for frame, n in profile["own"]]
            lines += ["", "Time under (inclusive):", ""]
            lines += [f"- {100 * n / total:.1f} % {frame}" for frame, n in profile["under"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ints = lambda text: [int(x) for x in text.replace(",", " ").split()]  # noqa: E731
    parser.add_argument("--sizes", type=ints, default=[1000, 100_000, 1_000_000])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--api-tasks", type=int, default=1000, help="the benchmark user's")
    parser.add_argument("--heavy-tasks", type=int, default=100_000, help="the cursor user's")
    parser.add_argument("--connections", type=ints, default=[64, 1000, 5000])
    parser.add_argument("--data-connections", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=10, help="wrk's per-request timeout (s)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--username", default="bench")
    parser.add_argument("--password", default="bench-password")
    parser.add_argument("--peers-dir", default=os.environ.get("BENCH_PEERS_DIR", ""))
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument(
        "--native", action="store_true", help="the profile's C frames too (pauses the process)"
    )
    parser.add_argument(
        "--no-unlimited",
        dest="unlimited",
        action="store_false",
        help="skip the connection sweep without the in-flight limit",
    )
    parser.add_argument(
        "--no-data-runs",
        dest="data_runs",
        action="store_false",
        help="load the data, but measure only the connection sweep",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    if sorted(args.sizes) != args.sizes or args.sizes[0] < args.api_tasks:
        sys.exit(f"--sizes must grow, from at least --api-tasks ({args.api_tasks})")
    started = dt.datetime.now(dt.UTC)
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"open files: {raise_open_files(max(args.connections))}; load {load_before}")
    if args.peers_dir and not (Path(args.peers_dir) / "targets").is_dir():
        sys.exit(f"--peers-dir / BENCH_PEERS_DIR: no targets/ in {args.peers_dir}")
    if not args.peers_dir:
        print("no side-by-side harness (--peers-dir or BENCH_PEERS_DIR): peers skipped")
    results: list[dict[str, Any]] = []
    notes: list[str] = []
    with run_bench.local_stores() as env:
        env = {**env, "WORKERS": str(args.workers)}
        url = env["DATABASE_URL"]
        print("data sweep", flush=True)
        state = data_sweep(args, env, url, results)
        explain = ""
        if "last_cursor" in state:
            explain = explain_domain_queries(
                url, state["bench"], state["heavy"], state["task_id"], state["last_cursor"]
            )
        print("connection sweep", flush=True)
        profile = connection_sweep(args, env, state, results)
        if args.peers_dir:
            from tests.services import running_postgres, running_redis

            with running_postgres() as pg, running_redis() as redis:
                notes = peer_sweep(args, pg, redis.url, state, results)
        else:
            notes = ["peers not measured: no side-by-side harness directory (BENCH_PEERS_DIR)"]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"scale-{started:%Y-%m-%d}"
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    written = charts(results, args.out, stem)
    text = report(args, results, state, explain, profile, notes, written, started, load_before)
    (args.out / f"{stem}.md").write_text(text)
    print(f"wrote {args.out / stem}.md, .json and {', '.join(written)}")


if __name__ == "__main__":
    main()

"""taskapi's own load benchmark (`make bench`): scenarios S1-S5 with wrk, and a login storm.

Against a deployment you run (`--base URL --username U --password P`: the user must exist;
the benchmark creates its tasks through the API), or, with no --base, against a throwaway local
deployment it starts itself: PostgreSQL and Redis from the machine's binaries, migrations, and
`bench/serve.sh` (hypercorn, production settings, rate limits raised by configuration).
Prints req/s, p50, p99 and errors per scenario, the servers' resident memory, and /health and
S1 latency during 100 concurrent logins. S5 (PATCH with If-Match on 100 shared tasks, created
just before it runs, re-reading on 412) also prints the share of its PATCHes answered 412; those
412s are not counted as errors. `--metrics-cost ROUNDS` runs only S1, with the Prometheus
metrics on and off (TASKAPI_METRICS_ENABLED) in alternating rounds on one local deployment, and
prints the ratio. Speed is measured here, never asserted.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LOCAL_DATABASE_URL = ""  # the throwaway deployment's database, when the benchmark made one
SCENARIOS = {
    "S1": "s1_detail",
    "S2": "s2_list",
    "S3": "s3_write",
    "S4": "s4_mixed",
    "S5": "s5_conflict",
}


class Client:
    """One keep-alive HTTP(S) connection; JSON in, (status, body) out."""

    def __init__(self, base: str) -> None:
        url = urllib.parse.urlsplit(base)
        kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        self.connection = kind(url.hostname or "127.0.0.1", url.port, timeout=60)

    def call(
        self, method: str, path: str, body: object = None, token: str = ""
    ) -> tuple[int, object]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        self.connection.request(method, path, body=data, headers=headers)
        response = self.connection.getresponse()
        raw = response.read()
        return response.status, (json.loads(raw) if raw else None)


def login(base: str, username: str, password: str) -> str:
    status, body = Client(base).call(
        "POST", "/auth/login", {"username": username, "password": password}
    )
    if status != 200 or not isinstance(body, dict):
        sys.exit(f"login as {username!r} failed: {status} {body}")
    return str(body["access_token"])


def create_tasks(base: str, token: str, count: int, title: str = "bench") -> list[int]:
    local = threading.local()

    def create(i: int) -> int:
        if not hasattr(local, "client"):
            local.client = Client(base)
        task = {"title": f"{title} {i}", "status": "completed" if i % 3 == 0 else "pending"}
        status, body = local.client.call("POST", "/api/tasks/", task, token)
        if status != 201 or not isinstance(body, dict):
            raise RuntimeError(f"create task: {status} {body}")
        return int(body["data"]["id"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(create, range(count)))


def run_wrk(
    base: str,
    scenario: str,
    token: str,
    ids_file: Path,
    args: argparse.Namespace,
    pids: list[int] | None = None,
) -> dict:
    """One scenario after its warm-up; with `pids`, also the CPU those processes used during
    the measured run (`cpu_seconds`)."""
    env = {
        **os.environ,
        "BENCH_TOKEN": token,
        "BENCH_IDS": str(ids_file),
        "BENCH_LUA_DIR": str(ROOT / "bench" / "lua"),
    }
    script = str(ROOT / "bench" / "lua" / f"{SCENARIOS[scenario]}.lua")
    common = ["-t", str(args.threads), "-c", str(args.connections), "-s", script, base]
    subprocess.run(
        ["wrk", "-d", f"{args.warmup}s", *common], env=env, capture_output=True, check=True
    )
    cpu_before = cpu_seconds(pids or [])
    out = subprocess.run(
        ["wrk", "-d", f"{args.duration}s", *common],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = benchjson(out)
    seconds = data["duration_us"] / 1e6
    return {
        **data,
        "rps": data["requests"] / seconds,
        "p50": data["p50_us"] / 1000,
        "p99": data["p99_us"] / 1000,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds(pids or []) - cpu_before,
    }


def benchjson(out: str) -> dict:
    """The figures wrk printed in its `BENCHJSON` line (bench/lua/common.lua's done())."""
    line = next(x for x in out.splitlines() if x.startswith("BENCHJSON "))
    return json.loads(line.removeprefix("BENCHJSON "))


def write_ids(ids: list[int]) -> Path:
    path = Path(tempfile.mkstemp(prefix="taskapi-bench-ids-")[1])
    path.write_text("\n".join(map(str, ids)) + "\n")
    return path


def conflict_summary(result: dict) -> str:
    """S5's line under the table: its PATCHes, the share answered 412, and the re-reads."""
    patches, failed = result["patches"], result["precondition_failed"]
    if not patches:
        return f'  S5: no PATCH sent: {result["no_etag"]} answers had no ETag "<id>.<version>"'
    line = (
        f"  S5: {patches} PATCHes with If-Match, {failed} answered 412 "
        f"({100 * failed / patches:.1f} %), {result['rereads']} re-reads after a 412 "
        f"(+{result['first_reads']} first reads); "
        f"{(patches - failed) / result['seconds']:.0f} PATCH/s applied"
    )
    if result["no_etag"]:
        line += f"; {result['no_etag']} answers without an ETag"
    return line


def login_storm(base: str, username: str, password: str, token: str, task_id: int) -> dict:
    """/health and S1 latency while 100 logins run at once, beside the same probes at rest."""

    def probe(seconds: float | None, stop: threading.Event | None) -> dict[str, list[float]]:
        client = Client(base)
        found: dict[str, list[float]] = {"health": [], "s1": []}
        deadline = time.monotonic() + (seconds or 3600)
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            for name, path in (("health", "/health"), ("s1", f"/api/tasks/{task_id}")):
                started = time.perf_counter()
                client.call("GET", path, token=token)
                found[name].append((time.perf_counter() - started) * 1000)
        return found

    def storm_login(_: int) -> float:
        started = time.perf_counter()
        status, _body = Client(base).call(
            "POST", "/auth/login", {"username": username, "password": password}
        )
        if status != 200:
            raise RuntimeError(f"login during the storm: {status}")
        return (time.perf_counter() - started) * 1000

    rest = probe(3.0, None)
    stop = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(101) as pool:
        probing = pool.submit(probe, None, stop)
        logins = list(pool.map(storm_login, range(100)))
        stop.set()
        storm = probing.result()

    def pct(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 2 else max(values)

    return {
        "logins_p50": statistics.median(logins),
        "logins_max": max(logins),
        **{
            f"{k}_{when}_{q}": pct(v, q)
            for when, found in (("rest", rest), ("storm", storm))
            for k, v in found.items()
            for q in (50, 99)
        },
    }


def resident_memory(pids: list[int]) -> list[str]:
    sizes = []
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(f"pid {pid}: {int(line.split()[1]) // 1024} MiB")
    return sizes


def relay_delays(database_url: str) -> str:
    """The outbox's delay from a write's commit to its job's hand-over, over this run's jobs."""
    import asyncio

    import asyncpg

    async def query() -> tuple[int, float | None, float | None, int]:
        url = database_url.replace("postgresql+asyncpg://", "postgresql://")
        connection = await asyncpg.connect(url)
        try:
            delay = "ORDER BY extract(epoch FROM sent_at - created_at)"
            row = await connection.fetchrow(
                f"SELECT count(*), percentile_cont(0.5) WITHIN GROUP ({delay}), "
                f"percentile_cont(0.99) WITHIN GROUP ({delay}) "
                "FROM outbox WHERE sent_at IS NOT NULL"
            )
            pending = await connection.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        finally:
            await connection.close()
        return int(row[0]), row[1], row[2], int(pending)

    sent, p50, p99, pending = asyncio.run(query())
    if not sent or p50 is None or p99 is None:
        return f"outbox: nothing relayed ({pending} pending: is a worker running?)"
    return (
        f"outbox relay, commit to hand-over: p50 {1000 * float(p50):.1f} ms, "
        f"p99 {1000 * float(p99):.1f} ms over {sent} jobs ({pending} still pending)"
    )


@contextlib.contextmanager
def local_stores(pgbouncer_pool: int = 0) -> Iterator[dict[str, str]]:
    """PostgreSQL + Redis + migrated schema; yields the environment bench/serve.sh needs. With
    `pgbouncer_pool`, the servers reach PostgreSQL through a PgBouncer in transaction mode with
    that many server connections (TASKAPI_DB_PGBOUNCER=1; the relay listens directly)."""
    from tests.services import free_port, running_pgbouncer, running_postgres, running_redis

    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(running_postgres())
        redis = stack.enter_context(running_redis())
        direct = pg.create_database("bench")
        env = {
            **os.environ,
            "DATABASE_URL": direct,
            "REDIS_URL": redis.url,
            "PORT": str(free_port()),
        }
        subprocess.run(
            [str(ROOT / ".venv/bin/taskapi"), "db", "upgrade"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        if pgbouncer_pool:
            bouncer = stack.enter_context(running_pgbouncer(pg, pool_size=pgbouncer_pool))
            env["DATABASE_URL"] = bouncer.url("bench")
            env.setdefault("TASKAPI_DB_PGBOUNCER", "1")  # 0 shows what it is for
            env["TASKAPI_DB_LISTEN_URL"] = direct
        global LOCAL_DATABASE_URL
        LOCAL_DATABASE_URL = direct
        yield env


@contextlib.contextmanager
def serving(env: dict[str, str]) -> Iterator[tuple[str, list[int]]]:
    """bench/serve.sh with `env` until the block ends; yields (base URL, server pids)."""
    from tests.services import poll

    log = tempfile.NamedTemporaryFile(prefix="taskapi-bench-", suffix=".log", delete=False)  # noqa: SIM115 - the server writes it until the end
    server = subprocess.Popen(
        ["bash", str(ROOT / "bench/serve.sh")],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{env['PORT']}"

    def up() -> bool:
        with contextlib.suppress(OSError):
            return Client(base).call("GET", "/health")[0] == 200
        return False

    try:
        poll(up, "the benchmark server")
        children = subprocess.run(
            ["pgrep", "-g", str(server.pid)], capture_output=True, text=True
        ).stdout.split()
        yield base, [int(p) for p in children]
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)


@contextlib.contextmanager
def local_deployment(workers: int, pgbouncer_pool: int) -> Iterator[tuple[str, list[int]]]:
    """PostgreSQL + Redis + migrated schema + bench/serve.sh; yields (base URL, server pids)."""
    with local_stores(pgbouncer_pool) as env, serving({**env, "WORKERS": str(workers)}) as deployed:
        yield deployed


def register(base: str, username: str, password: str) -> None:
    Client(base).call(
        "POST",
        "/auth/register",
        {"username": username, "email": f"{username}@example.com", "password": password},
    )


def requests_counted(base: str) -> float:
    """The sum of taskapi_http_requests_total of the process that answers this scrape."""
    url = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    connection.request("GET", "/metrics")
    response = connection.getresponse()
    text = response.read().decode()
    if response.status != 200:
        return float("nan")
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("taskapi_http_requests_total{")
    )


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time the processes have used so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def metrics_cost(args: argparse.Namespace) -> None:
    """S1 with TASKAPI_METRICS_ENABLED true and false, in alternating rounds on one local
    deployment (the servers restarted between runs, the data kept): req/s per run, and the
    ratio of the medians."""
    rps: dict[str, list[float]] = {"true": [], "false": []}
    cpu: dict[str, list[float]] = {"true": [], "false": []}  # server CPU µs per request
    with local_stores() as env:
        env = {**env, "WORKERS": str(args.workers)}
        ids_file: Path | None = None
        print(
            f"metrics cost: S1, wrk -t{args.threads} -c{args.connections}, {args.duration}s "
            f"per run after {args.warmup}s warm-up, {args.metrics_cost} rounds"
        )
        for round_number in range(args.metrics_cost):
            order = ("true", "false") if round_number % 2 == 0 else ("false", "true")
            for enabled in order:
                with serving({**env, "TASKAPI_METRICS_ENABLED": enabled}) as (base, pids):
                    if ids_file is None:
                        register(base, args.username, args.password)
                        token = login(base, args.username, args.password)
                        ids_file = write_ids(create_tasks(base, token, args.tasks))
                    token = login(base, args.username, args.password)
                    result = run_wrk(base, "S1", token, ids_file, args, pids)
                    counted = requests_counted(base) if enabled == "true" else None
                rps[enabled].append(result["rps"])
                cpu[enabled].append(1e6 * result["cpu_seconds"] / max(1, result["requests"]))
                shown = f", {counted:.0f} requests counted by one process" if counted else ""
                print(
                    f"  round {round_number + 1} metrics {'on ' if enabled == 'true' else 'off'}"
                    f"  {result['rps']:>7.0f} req/s  p50 {result['p50']:.2f} ms  "
                    f"p99 {result['p99']:.2f} ms  errors {result['errors']}  "
                    f"server CPU {cpu[enabled][-1]:.0f} µs/request{shown}"
                )
    on, off = statistics.median(rps["true"]), statistics.median(rps["false"])
    ratios = [a / b for a, b in zip(rps["true"], rps["false"], strict=True)]
    print(
        f"S1 median req/s: metrics on {on:.0f}, off {off:.0f}; on/off per round "
        + " ".join(f"{r:.3f}" for r in ratios)
        + f", median {statistics.median(ratios):.3f}"
    )
    cpu_on, cpu_off = statistics.median(cpu["true"]), statistics.median(cpu["false"])
    print(
        f"server CPU per S1 request (median): metrics on {cpu_on:.0f} µs, off {cpu_off:.0f} µs "
        f"({100 * (cpu_on / cpu_off - 1):+.1f} %)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", help="a running taskapi, e.g. https://api.example.com")
    parser.add_argument("--username", default="bench")
    parser.add_argument("--password", default="bench-password")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="server processes (local only)")
    parser.add_argument("--shared-tasks", type=int, default=100, help="the tasks S5 writes")
    parser.add_argument("--scenarios", default="S1 S2 S3 S4 S5")
    parser.add_argument(
        "--pgbouncer",
        type=int,
        default=0,
        metavar="POOL",
        help="local only: reach PostgreSQL through a PgBouncer in transaction mode with POOL "
        "server connections (and TASKAPI_DB_PGBOUNCER=1)",
    )
    parser.add_argument(
        "--metrics-cost",
        type=int,
        metavar="ROUNDS",
        help="only S1, with the metrics on and off in ROUNDS alternating rounds (local only)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    if args.metrics_cost:
        if args.base:
            sys.exit("--metrics-cost restarts the servers: it runs on a local deployment only")
        metrics_cost(args)
        return

    with contextlib.ExitStack() as stack:
        pids: list[int] = []
        base = args.base
        if base is None:
            base, pids = stack.enter_context(local_deployment(args.workers, args.pgbouncer))
            register(base, args.username, args.password)
        token = login(base, args.username, args.password)
        ids = create_tasks(base, token, args.tasks)
        ids_file = write_ids(ids)
        print(
            f"taskapi at {base}: {len(ids)} tasks; wrk -t{args.threads} -c{args.connections}, "
            f"{args.duration}s per scenario after {args.warmup}s warm-up"
        )
        print(f"{'scenario':<9}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
        notes = []
        for scenario in args.scenarios.split():
            scenario_ids = ids_file
            if scenario == "S5":  # its own tasks, made now: S1-S4 run on the same data as before
                shared = create_tasks(base, token, args.shared_tasks, "bench shared")
                scenario_ids = write_ids(shared)
            result = run_wrk(base, scenario, token, scenario_ids, args)
            print(
                f"{scenario:<9}{result['rps']:>10.0f}{result['p50']:>10.2f}"
                f"{result['p99']:>10.2f}{result['errors']:>8}"
            )
            if scenario == "S5":
                notes.append(conflict_summary(result))
        for note in notes:
            print(note)
        if LOCAL_DATABASE_URL:
            print(relay_delays(LOCAL_DATABASE_URL))
        if pids:
            print("resident memory after the run: " + ", ".join(resident_memory(pids)))
        storm = login_storm(base, args.username, args.password, token, ids[0])
        print(
            "login storm (100 concurrent logins): "
            f"logins p50 {storm['logins_p50']:.0f} ms, slowest {storm['logins_max']:.0f} ms"
        )
        for name in ("health", "s1"):
            print(
                f"  {name:<7} at rest p50 {storm[f'{name}_rest_50']:.2f} ms p99 "
                f"{storm[f'{name}_rest_99']:.2f} ms | during the storm p50 "
                f"{storm[f'{name}_storm_50']:.2f} ms p99 {storm[f'{name}_storm_99']:.2f} ms"
            )


if __name__ == "__main__":
    main()

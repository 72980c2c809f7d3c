"""Where a request's CPU goes, by process: the API processes, PostgreSQL, Redis and wrk itself,
under one wrk scenario against a throwaway deployment of two API processes (as `make bench`
runs them, without the arq worker). Prints, per scenario, req/s and the CPU milliseconds each
kind of process spent per request (user + system, from /proc), and how many cores were busy.

    .venv/bin/python bench/cost_by_process.py [--scenarios "S3 S1"] [--seconds 12]
        [--connections "64 5000"]

It says which process a scenario's cost is in. Other load on the machine inflates the CPU per
request too (seen here: twice the quiet figure at a load average of 7), so run it quiet.
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run_bench import Client, create_tasks, local_deployment, login, run_wrk  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def kind_of(command: str, name: str) -> str | None:
    """Which kind of process this is (hypercorn runs its worker as a multiprocessing child)."""
    if name == "postgres" or "postgres" in command:
        return "postgres"
    if "redis-server" in command:
        return "redis"
    if "hypercorn" in command or "spawn_main" in command:
        return "api"
    if command.startswith("wrk"):
        return "wrk"
    return None


def cpu_ticks() -> dict[tuple[str, str], tuple[int, int]]:
    """(kind, pid) → (user, system) clock ticks, of every process of a kind above."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        kind = kind_of(command, name)
        if kind is not None:
            fields = stat[stat.rfind(")") + 2 :].split()
            found[(kind, entry.name)] = (int(fields[11]), int(fields[12]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenarios", default="S3 S1")
    parser.add_argument("--seconds", type=int, default=12)
    parser.add_argument("--connections", default="64", help="wrk's, each in turn")
    args = parser.parse_args()
    counts = [int(c) for c in args.connections.replace(",", " ").split()]
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # wrk and the servers inherit it
    os.environ.setdefault("BENCH_ARQ_WORKER", "0")
    deployment = local_deployment(2, pgbouncer_pool=0)
    with deployment as (base, _pids), tempfile.TemporaryDirectory() as scratch:
        password = "Profile-Pass-93x!"
        Client(base).call(
            "POST",
            "/auth/register",
            {"username": "costs", "email": "costs@example.com", "password": password},
        )
        token = login(base, "costs", password)
        ids_file = Path(scratch) / "ids"
        ids_file.write_text("\n".join(map(str, create_tasks(base, token, 200))))
        for scenario, connections in itertools.product(args.scenarios.split(), counts):
            wrk_args = argparse.Namespace(
                threads=1 if connections <= 64 else 2,
                connections=connections,
                warmup=3,
                duration=args.seconds,
            )
            result: dict = {}
            load = threading.Thread(
                target=lambda s=scenario, w=wrk_args, r=result: r.update(
                    run_wrk(base, s, token, ids_file, w)
                )
            )
            load.start()
            time.sleep(wrk_args.warmup + 1)  # past wrk's warm-up run: measure inside the run
            before, started = cpu_ticks(), time.monotonic()
            time.sleep(args.seconds - 2)
            after, ended = cpu_ticks(), time.monotonic()
            load.join()
            requests = result["rps"] * (ended - started)
            spent: dict[str, list[float]] = {}
            for key, (user, system) in after.items():
                user0, system0 = before.get(key, (0, 0))
                totals = spent.setdefault(key[0], [0.0, 0.0])
                totals[0] += (user - user0) / TICKS
                totals[1] += (system - system0) / TICKS
            per_request = ", ".join(
                f"{kind} {u * 1000 / requests:.3f}+{s * 1000 / requests:.3f}"
                for kind, (u, s) in sorted(spent.items())
            )
            busy = sum(u + s for u, s in spent.values()) / (ended - started)
            print(
                f"{scenario} -c{connections}: {result['rps']:.0f} req/s, p50 {result['p50']:.1f} "
                f"ms, p99 {result['p99']:.1f} ms; CPU ms per request (user+system): "
                f"{per_request}; {busy:.2f} cores busy",
                flush=True,
            )


if __name__ == "__main__":
    main()

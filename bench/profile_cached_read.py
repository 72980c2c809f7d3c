"""Where a cached read's CPU goes: one serving process under wrk's S1 (cached task detail),
sampled by py-spy, each sample charged to the package of its innermost frame.

    .venv/bin/python bench/profile_cached_read.py [--seconds 15] [--scenario S1]

Needs wrk and py-spy (`.venv/bin/pip install py-spy`); starts its own throwaway deployment
(as `make bench` does) with one hypercorn process. Prints the share of samples per package.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run_bench import (  # noqa: E402 - after the path is set
    Client,
    create_tasks,
    local_deployment,
    login,
    run_wrk,
)

GROUPS = {
    "taskapi": "taskapi (our code)",
    "asgi.py": "taskapi (our code)",
    "quart": "quart / werkzeug / quart-schema",
    "werkzeug": "quart / werkzeug / quart-schema",
    "quart_schema": "quart / werkzeug / quart-schema",
    "flask": "quart / werkzeug / quart-schema",
    "hypercorn": "hypercorn / h11",
    "h11": "hypercorn / h11",
    "h2": "hypercorn / h11",
    "redis": "redis-py",
    "sqlalchemy": "sqlalchemy / asyncpg",
    "asyncpg": "sqlalchemy / asyncpg",
    "pydantic": "pydantic / orjson / jwt",
    "pydantic_core": "pydantic / orjson / jwt",
    "jwt": "pydantic / orjson / jwt",
    "quart_jwt_extended": "pydantic / orjson / jwt",
    "asyncio": "asyncio / uvloop",
    "uvloop": "asyncio / uvloop",
}


OURS = "taskapi (our code)"


def group_of(frame: str) -> str:
    """A py-spy frame, `function (path:line)`, by the top-level package of its path."""
    path = frame[frame.rfind("(") + 1 :].rsplit(":", 1)[0]
    return GROUPS.get(path.split("/", 1)[0], "other (stdlib, interpreter)")


def shares(collapsed: Path) -> tuple[dict[str, float], float]:
    """Samples per group by each stack's innermost frame (self time), as fractions of all
    samples; and the fraction of samples with one of our frames anywhere on the stack."""
    counts: collections.Counter[str] = collections.Counter()
    through_ours = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        counts[group_of(frames[-1])] += int(count)
        if any(group_of(frame) == OURS for frame in frames):
            through_ours += int(count)
    total = sum(counts.values()) or 1
    return {name: counts[name] / total for name, _ in counts.most_common()}, through_ours / total


def hypercorn_pid(pids: list[int]) -> int:
    """The serving process (hypercorn's parent: --subprocesses takes in its worker)."""
    for pid in sorted(pids):
        if b"hypercorn" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
    raise SystemExit(f"no hypercorn among {pids}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--scenario", default="S1")
    parser.add_argument("--raw", type=Path, help="also keep py-spy's raw samples here")
    args = parser.parse_args()
    wrk_args = argparse.Namespace(threads=1, connections=64, warmup=3, duration=args.seconds + 4)
    deployment = local_deployment(1, pgbouncer_pool=0)
    with deployment as (base, pids), tempfile.TemporaryDirectory() as scratch:
        Client(base).call(
            "POST",
            "/auth/register",
            {"username": "profiler", "email": "p@example.com", "password": "Profile-Pass-93x!"},
        )
        token = login(base, "profiler", "Profile-Pass-93x!")
        ids = create_tasks(base, token, 200)
        ids_file = Path(scratch) / "ids"
        ids_file.write_text("\n".join(map(str, ids)))
        out = Path(scratch) / "profile.txt"
        result: dict = {}
        load = threading.Thread(
            target=lambda: result.update(run_wrk(base, args.scenario, token, ids_file, wrk_args))
        )
        load.start()
        time.sleep(5)  # sample past wrk's warm-up; the load runs on meanwhile
        subprocess.run(
            [
                str(ROOT / ".venv/bin/py-spy"),
                "record",
                "--pid",
                str(hypercorn_pid(pids)),
                "--subprocesses",
                "--duration",
                str(args.seconds - 2),
                "--format",
                "raw",
                "--output",
                str(out),
                "--nonblocking",
            ],
            check=True,
            capture_output=True,
        )
        load.join()
        if args.raw is not None:
            args.raw.write_text(out.read_text())
        print(f"{args.scenario} under py-spy: {result.get('rps', 0):.0f} req/s (one process)")
        by_group, through_ours = shares(out)
        print("self time by package (innermost frame):")
        for name, share in by_group.items():
            print(f"  {share * 100:5.1f} %  {name}")
        print(f"samples with our code on the stack (inclusive): {through_ours * 100:.1f} %")


if __name__ == "__main__":
    main()

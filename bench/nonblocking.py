"""/health latency on one in-process app while 20 logins hash at once, beside one login alone.

Run by hand: `.venv/bin/python bench/nonblocking.py [--burst 20]`. A throwaway SQLite database,
production's argon2 cost or more (`--time-cost`, `--memory-kib`); prints the figures, asserts
nothing. Were hashing on the event loop, the slowest /health would wait for a whole hash.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from alembic import command

from taskapi.app import create_app
from taskapi.infra.migrate import alembic_config
from taskapi.settings import Settings, load_settings

CREDENTIALS = {"username": "burst", "password": "burst-password"}


async def measure(settings: Settings, burst: int) -> dict:
    app = create_app(settings)
    async with app.test_app():
        client = app.test_client()
        registered = await client.post(
            "/auth/register", json={**CREDENTIALS, "email": "burst@example.com"}
        )
        if registered.status_code != 201:
            raise SystemExit(f"register: {registered.status_code}")

        async def timed_login() -> float:
            started = time.perf_counter()
            response = await client.post("/auth/login", json=CREDENTIALS)
            if response.status_code != 200:
                raise RuntimeError(f"login: {response.status_code}")
            return (time.perf_counter() - started) * 1000

        alone = await timed_login()
        logins = [asyncio.create_task(timed_login()) for _ in range(burst)]
        health: list[float] = []
        while not all(task.done() for task in logins):
            started = time.perf_counter()
            response = await client.get("/health")
            if response.status_code != 200:
                raise RuntimeError(f"/health: {response.status_code}")
            health.append((time.perf_counter() - started) * 1000)
        during = await asyncio.gather(*logins)
    return {"alone": alone, "health": health, "logins": during}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=20)
    parser.add_argument("--time-cost", type=int, default=3)
    parser.add_argument("--memory-kib", type=int, default=65536)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}"
        settings = load_settings(
            environ={},
            env="testing",
            database_url=url,
            argon2_time_cost=args.time_cost,
            argon2_memory_cost_kib=args.memory_kib,
        )
        command.upgrade(alembic_config(settings), "head")  # before the loop (alembic's own)
        found = asyncio.run(measure(settings, args.burst))
    health = found["health"]
    print(f"argon2 time_cost={args.time_cost} memory={args.memory_kib} KiB, burst={args.burst}")
    print(f"one login alone: {found['alone']:.1f} ms")
    print(
        f"logins in the burst: p50 {statistics.median(found['logins']):.1f} ms,"
        f" slowest {max(found['logins']):.1f} ms"
    )
    print(
        f"/health during the burst: {len(health)} requests, p50 {statistics.median(health):.2f} ms,"
        f" slowest {max(health):.2f} ms ({max(health) / found['alone']:.2f} of one login alone)"
    )


if __name__ == "__main__":
    main()

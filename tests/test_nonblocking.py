"""Password hashing runs off the event loop: /health keeps answering during a login burst."""

from __future__ import annotations

import asyncio
import statistics
import time

from taskapi.app import create_app

BURST = 20


async def test_health_stays_fast_during_a_burst_of_logins(settings, clean_db):
    # Costly hashes, as production's or more, make a blocked loop impossible to miss.
    app = create_app(settings.replace(argon2_time_cost=3, argon2_memory_cost_kib=65536))
    credentials = {"username": "burst", "password": "burst-password"}
    async with app.test_app():
        client = app.test_client()
        registered = await client.post(
            "/auth/register", json={**credentials, "email": "burst@example.com"}
        )
        assert registered.status_code == 201

        async def timed_login() -> float:
            started = time.perf_counter()
            response = await client.post("/auth/login", json=credentials)
            assert response.status_code == 200
            return time.perf_counter() - started

        alone = await timed_login()  # one login, nothing else running: about one hash
        logins = [asyncio.create_task(timed_login()) for _ in range(BURST)]
        health: list[float] = []
        while not all(task.done() for task in logins):
            started = time.perf_counter()
            response = await client.get("/health")
            assert response.status_code == 200
            health.append(time.perf_counter() - started)
        burst = await asyncio.gather(*logins)

    # Were hashing on the loop, the loop would stall for a whole hash at a time (20 of them),
    # and the slowest /health would take at least one hash: measured here, it took 8x longer.
    assert len(health) >= BURST, (len(health), alone)
    assert max(health) < alone / 2, (max(health), alone)
    # ...and the logins themselves really were slow and concurrent.
    assert statistics.median(burst) > alone

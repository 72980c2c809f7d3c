"""Concurrent writers on one app: no 'database is locked', no lost writes (SQLite included)."""

from __future__ import annotations

import asyncio

WRITERS = 30


async def test_concurrent_creates_and_updates_all_succeed(client_as):
    api = await client_as()
    created = await asyncio.gather(
        *(api.post("/api/tasks/", json={"title": f"t{i}"}) for i in range(WRITERS))
    )
    assert [r.status_code for r in created] == [201] * WRITERS
    ids = [(await r.get_json())["data"]["id"] for r in created]
    assert len(set(ids)) == WRITERS

    patched = await asyncio.gather(
        *(api.patch(f"/api/tasks/{task_id}", json={"status": "completed"}) for task_id in ids)
    )
    assert [r.status_code for r in patched] == [200] * WRITERS
    listed = await (await api.get("/api/tasks/?status=completed")).get_json()
    assert listed["meta"]["count"] == WRITERS


async def test_concurrent_registrations_of_one_name_give_one_201_and_the_rest_409(client):
    body = {"username": "race", "email": "race@example.com", "password": "race-password"}
    responses = await asyncio.gather(*(client.post("/auth/register", json=body) for _ in range(8)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 7

"""The worker's own Redis client: a connection lost while a transaction WATCHes a key voids that
transaction (its EXEC raises WatchError, which arq's job start handles) instead of raising from
the command that met the loss, which would end the worker; and a worker stopped while Redis is
down stops waiting for it, even before its start-up has named its main task."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import WatchError

from taskapi.infra.redis.worker_redis import outage_proof_pool, outage_proof_redis_settings
from tests.services import free_port, running_redis, until


async def test_a_connection_lost_while_watching_voids_only_the_transaction():
    with running_redis() as server:
        settings, retry = outage_proof_redis_settings(server.url)
        client = outage_proof_pool(settings, server.url, retry)
        try:
            async with client.pipeline(transaction=True) as pipe:
                await pipe.watch("claimed")
                server.stop()
                server.start()
                assert await pipe.exists("claimed") == 0  # answered on a new connection
                pipe.multi()
                pipe.set("claimed", "by this worker")
                with pytest.raises(WatchError):
                    await pipe.execute()
            assert await client.get("claimed") is None  # the transaction did not run
            assert await client.set("claimed", "later") is True  # the client goes on
        finally:
            await client.aclose()


async def test_a_worker_stopped_before_its_start_up_ran_stops_waiting_for_a_gone_redis(caplog):
    """arq's main task makes its first Redis call (log_redis_info) before on_startup names it
    (`serve_while`). Redis gone then, and SIGTERM cancelling that task: arq's close() then
    deletes its health-check key from another task, which must fail, not retry for ever (the
    worker hung until killed)."""
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there: Redis is gone
    settings, retry = outage_proof_redis_settings(url)
    client = outage_proof_pool(settings, url, retry)
    try:
        main = asyncio.create_task(client.ping())  # waits the outage out...
        await until(
            lambda: any("redis unavailable" in r.getMessage() for r in caplog.records),
            "the ping to meet the outage",
            10,
        )
        assert not main.done()
        main.cancel()  # ...until SIGTERM cancels the main task
        with pytest.raises(asyncio.CancelledError):
            await main
        closing = asyncio.create_task(client.delete("arq:health-check"))
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(closing, 10)  # the bound is the test's, not the client's
    finally:
        await client.aclose()

"""The worker's own Redis client: a connection lost while a transaction WATCHes a key voids that
transaction (its EXEC raises WatchError, which arq's job start handles) instead of raising from
the command that met the loss, which would end the worker."""

from __future__ import annotations

import pytest
from redis.exceptions import WatchError

from taskapi.infra.redis.worker_redis import outage_proof_pool, outage_proof_redis_settings
from tests.services import running_redis


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

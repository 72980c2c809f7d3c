"""Idempotency keys in Redis, shared by every process: a key is claimed in the gate's script
(`taskapi.infra.redis.gate`); the claiming request's answer is kept, or its key freed, by a
compare-and-set script that acts only while the claim is still the request's own.

A key's record: `R<token><fingerprint>` while its request runs, `D<fingerprint>` and the
answer (an `Entry`) once kept."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskapi.infra.redis.pool import RedisPool
from taskapi.infra.stores import Claimed, Entry, IdempotencyClaim

_RUNNING, _DONE = b"R", b"D"
_FINGERPRINT = 64  # hex characters of a SHA-256 (`taskapi.domain.idempotency.fingerprint`)
_TOKEN = 32  # hex characters

# KEYS: the key. ARGV: the in-flight record it must still hold; then the answer's record and
# its lifetime (s) to keep, or nothing to free the key.
_SETTLE_LUA = """if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
return 1
"""


def in_flight_record(claim: IdempotencyClaim) -> bytes:
    return _RUNNING + claim.token.encode() + claim.fingerprint.encode()


def claimed_from(values: Sequence[Any]) -> Claimed:
    """The claim fragment's reply slots as a Claimed."""
    won, record = values
    if int(won):
        return Claimed(True)
    raw: bytes = record or b""
    if raw[:1] == _DONE:
        fingerprint = raw[1 : 1 + _FINGERPRINT].decode()
        return Claimed(False, fingerprint, Entry.loads(raw[1 + _FINGERPRINT :]))
    start = 1 + _TOKEN
    return Claimed(False, raw[start : start + _FINGERPRINT].decode())


class RedisIdempotency:
    def __init__(self, pool: RedisPool) -> None:
        self.pool = pool
        self._script: Any = None

    async def _settle(self, claim: IdempotencyClaim, *then: bytes | int) -> None:
        if self._script is None:
            self._script = self.pool.client.register_script(_SETTLE_LUA)
        script = self._script
        args = [in_flight_record(claim), *then]
        await self.pool.guarded("idempotency", lambda: script(keys=[claim.key], args=args))

    async def complete(self, claim: IdempotencyClaim, entry: Entry, ttl: int) -> None:
        await self._settle(claim, _DONE + claim.fingerprint.encode() + entry.dumps(), ttl)

    async def release(self, claim: IdempotencyClaim) -> None:
        await self._settle(claim)

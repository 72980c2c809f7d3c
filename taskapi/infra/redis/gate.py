"""The gate's step in Redis: one script, one round trip, its parts in this order:

1. revocation: `revoked` is 1 when the token's jti is in the copy of the revocation record,
   0 when it is not and the copy is whole (it holds its LOADED member), 2 (unknown) when the
   copy is not whole;
2. the GCRA step over the request's limits, on the fallback keys unless `revoked` is 0 (a
   revoked token's caller, or one not yet proven unrevoked, is just an address); a refusal
   ends the script there (`return out`);
3. the idempotency claim (SET NX, or the record that holds the key), made only when
   `revoked` is 0;
4. the cached answer, looked up only when `revoked` is 0.

`revoked` is the one local the parts share; it is declared in this module's prelude, set by
part 1 only and read by parts 2, 3 and 4 only.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Sequence

from taskapi.infra.redis.idempotency import claimed_from, in_flight_record
from taskapi.infra.redis.pool import RedisPool
from taskapi.infra.redis.script import Fragment, Part, ScriptBook
from taskapi.infra.redis.state import LOADED, REVOKED_KEY, cache_key
from taskapi.infra.stores import (
    CacheSlot,
    Entry,
    GateAnswer,
    GateQuery,
    Limit,
    Lookup,
    Outcome,
)

PRELUDE = "local revoked = 0"

# KEYS: the revocations' sorted set. ARGV: the jti, the LOADED member. Reply slot: 1 revoked,
# 0 not, 2 unknown (the set is not whole).
REVOCATION = Fragment(
    "revoked",
    keys=1,
    args=2,
    slots=1,
    lua="""if redis.call('ZSCORE', KEYS[$K], ARGV[$A]) then
  revoked = 1
elseif not redis.call('ZSCORE', KEYS[$K], ARGV[$A + 1]) then
  revoked = 2
end
out[$S] = revoked""",
)

# workaround: quart-rate-limiter RedisStore is GET then SET, not atomic (pinned by tests/test_library_defects.py::test_rate_limiter_redis_store_is_get_then_set)
# KEYS: n keys, then n fallback keys used instead unless `revoked` is 0. ARGV: (interval ms, period
# ms) per limit. Reply slots: 1 (allowed, then n separations) or 0 (refused: index,
# retry-after ms, separation ms).
_GCRA_LUA = """do
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
  local base = $K
  if revoked ~= 0 and $FALLBACK then base = $K + $N end
  local tats = {}
  for i = 0, $N - 1 do
    local interval, period = tonumber(ARGV[$A + 2*i]), tonumber(ARGV[$A + 2*i + 1])
    local stored = redis.call('GET', KEYS[base + i])
    local tat = now
    if stored then tat = math.max(tonumber(stored), now) end
    if tat - now > period - interval then
      out[$S] = 0
      out[$S + 1] = i
      out[$S + 2] = tostring(tat - (period - interval) - now)
      out[$S + 3] = tostring(tat - now)
      return out
    end
    tats[i] = tat
  end
  out[$S] = 1
  for i = 0, $N - 1 do
    local new_tat = tats[i] + tonumber(ARGV[$A + 2*i])
    redis.call('SET', KEYS[base + i], tostring(new_tat), 'PX', math.ceil(new_tat - now))
    out[$S + 1 + i] = tostring(new_tat - now)
  end
end"""

# KEYS: the idempotency key. ARGV: the in-flight record, its lifetime (ms). Reply slots: 1
# (claimed) or 0 and the record that holds the key; both nil unless `revoked` is 0.
CLAIM = Fragment(
    "claim",
    keys=1,
    args=2,
    slots=2,
    lua="""if revoked == 0 then
  if redis.call('SET', KEYS[$K], ARGV[$A], 'NX', 'PX', ARGV[$A + 1]) then
    out[$S] = 1
  else
    out[$S] = 0
    out[$S + 1] = redis.call('GET', KEYS[$K])
  end
end""",
)

# KEYS: the version's key. ARGV: the entry key's prefix and suffix around the version.
# Reply slots: the version, the entry (nil when absent); both nil unless `revoked` is 0.
CACHE = Fragment(
    "cache",
    keys=1,
    args=2,
    slots=2,
    lua="""if revoked == 0 then
  local version = redis.call('GET', KEYS[$K]) or '0'
  out[$S] = version
  out[$S + 1] = redis.call('GET', ARGV[$A] .. version .. ARGV[$A + 1])
end""",
)


@functools.cache
def _gcra(n: int, fallback: bool) -> Fragment:
    """The step over `n` limits (with `n` fallback keys after the first `n` when `fallback`)."""
    lua = string.Template(_GCRA_LUA).safe_substitute(N=n, FALLBACK=str(fallback).lower())
    return Fragment("rate", keys=2 * n if fallback else n, args=2 * n, slots=1 + max(n, 3), lua=lua)


@functools.cache
def _gcra_args(limits: tuple[Limit, ...]) -> tuple[float, ...]:
    return tuple(value for lim in limits for value in (lim.interval_ms, lim.period_ms))


def _outcome(values: Sequence[bytes | int], n: int) -> Outcome:
    if int(values[0]):
        return Outcome(True, tuple(float(v) for v in values[1 : 1 + n]))
    index, retry, separation = values[1:4]
    return Outcome(False, (float(separation),), int(index), float(retry))


def _lookup(slot: CacheSlot, values: Sequence[bytes]) -> Lookup:
    version, raw = values
    return Lookup(slot.key(version.decode()), Entry.loads(raw) if raw is not None else None)


class RedisGatekeeper:
    def __init__(self, pool: RedisPool) -> None:
        self.book = ScriptBook(pool, PRELUDE)

    async def admit(self, query: GateQuery) -> GateAnswer:
        parts: list[Part] = []
        if query.jti is not None:
            parts.append(Part(REVOCATION, [REVOKED_KEY], [query.jti, LOADED]))
        n = len(query.limits)
        if n:
            keys = list(query.keys)
            fallback = query.fallback_keys is not None and query.jti is not None
            if fallback:
                keys += query.fallback_keys or ()
            parts.append(Part(_gcra(n, fallback), keys, _gcra_args(query.limits)))
        claim = query.claim
        if claim is not None:
            parts.append(Part(CLAIM, [claim.key], [in_flight_record(claim), claim.in_flight_ms]))
        slot = query.slot
        if slot is not None:
            parts.append(
                Part(CACHE, [cache_key(slot.version_key)], [cache_key(slot.prefix), slot.suffix])
            )
        if not parts:
            return GateAnswer()
        reply = await self.book.run("gate", parts)
        state = int((reply["revoked"] or [0])[0])
        revoked, unproven = state == 1, state != 0
        rate = reply["rate"]
        outcome = _outcome(rate, n) if rate is not None else None
        claim_values = reply["claim"]
        claimed = None
        if claim_values is not None and claim_values[0] is not None and not unproven:
            claimed = claimed_from(claim_values)
        values = reply["cache"]
        lookup = None
        if slot is not None and values is not None and values[0] is not None and not unproven:
            lookup = _lookup(slot, values)
        return GateAnswer(revoked, outcome, claimed, lookup, revocation_unknown=state == 2)

"""Rate limits: the GCRA step over a request's limits (a Lua fragment for Redis, the same
arithmetic in process), the figures for the RateLimit-* headers, and per-username login-failure
limits. Keys expire; the step is atomic (one script, or no await in process)."""

from __future__ import annotations

import dataclasses
import functools
import math
import string
import time
from collections.abc import Iterable, Sequence
from typing import Any

from taskapi.infra.redis_pool import RedisPool
from taskapi.infra.redis_script import Fragment, Part
from taskapi.settings import RateLimitSpec, parse_rate_limits

PREFIX = "taskapi:rl:"


@dataclasses.dataclass(frozen=True, slots=True)
class Limit:
    """`count` requests per `seconds`."""

    count: int
    seconds: float

    @property
    def interval_ms(self) -> float:
        return self.seconds * 1000 / self.count

    @property
    def period_ms(self) -> float:
        return self.seconds * 1000


def limits_from(specs: Iterable[RateLimitSpec]) -> list[Limit]:
    """Limits for limit settings (parsed and validated by taskapi.settings)."""
    return [Limit(count, seconds) for count, seconds in specs]


def parse_limits(text: str) -> list[Limit]:
    """'200 per day;50 per hour' → limits (the grammar: `settings.parse_rate_limits`)."""
    return limits_from(parse_rate_limits(text))


def limit_keys(scope: str, endpoint: str, limits: tuple[Limit, ...]) -> list[str]:
    """One key per limit: budgets are per caller (`ip:<addr>` or `user:<id>`) and per route."""
    head = PREFIX + scope
    return [head + suffix for suffix in _key_suffixes(endpoint, limits)]


@functools.cache
def _key_suffixes(endpoint: str, limits: tuple[Limit, ...]) -> tuple[str, ...]:
    return tuple(f":{endpoint}:{lim.count}/{lim.seconds:g}" for lim in limits)


@functools.cache
def _shortest(limits: tuple[Limit, ...]) -> int:
    """The index of the limit with the shortest window (the one the headers describe)."""
    return min(range(len(limits)), key=lambda i: limits[i].seconds)


@functools.cache
def _gcra_args(limits: tuple[Limit, ...]) -> tuple[float, ...]:
    return tuple(value for lim in limits for value in (lim.interval_ms, lim.period_ms))


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """A GCRA step's result. Allowed: each limit's separation (ms) after the update. Refused:
    the refusing limit's `index`, `retry_after_ms` and its separation in `separations[0]`."""

    allowed: bool
    separations: tuple[float, ...]
    index: int = 0
    retry_after_ms: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """What the RateLimit-* headers (and Retry-After) say about a step."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    retry_after: int = 0


def decide(limits: tuple[Limit, ...], outcome: Outcome) -> Decision:
    """The headers' figures: the refusing limit, or the shortest window's remaining budget."""
    if not outcome.allowed:
        refused = limits[outcome.index]
        retry_after = max(1, math.ceil(outcome.retry_after_ms / 1000))
        reset = math.ceil(outcome.separations[0] / 1000)
        return Decision(False, refused.count, 0, reset, retry_after)
    shortest = _shortest(limits)
    limit, separation = limits[shortest], outcome.separations[shortest]
    remaining = int((limit.period_ms - separation) / limit.interval_ms)
    return Decision(True, limit.count, max(0, remaining), math.ceil(separation / 1000))


# workaround: quart-rate-limiter RedisStore is GET then SET, not atomic (pinned by tests/test_library_defects.py::test_rate_limiter_redis_store_is_get_then_set)
# KEYS: n keys, then n fallback keys used instead when the token proved revoked (the caller
# is then just an address). ARGV: (interval ms, period ms) per limit. Reply slots: 1 (allowed,
# then n separations) or 0 (refused: index, retry-after ms, separation ms).
_GCRA_LUA = """do
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
  local base = $K
  if revoked == 1 and $FALLBACK then base = $K + $N end
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


@functools.cache
def gcra_fragment(n: int, fallback: bool) -> Fragment:
    """The step over `n` limits (with `n` fallback keys after the first `n` when `fallback`)."""
    lua = string.Template(_GCRA_LUA).safe_substitute(N=n, FALLBACK=str(fallback).lower())
    return Fragment("rate", keys=2 * n if fallback else n, args=2 * n, slots=1 + max(n, 3), lua=lua)


def gcra_part(
    keys: list[str], limits: tuple[Limit, ...], fallback_keys: list[str] | None = None
) -> Part:
    all_keys = keys + fallback_keys if fallback_keys is not None else keys
    fragment = gcra_fragment(len(limits), fallback_keys is not None)
    return Part(fragment, all_keys, _gcra_args(limits))


def read_outcome(values: Sequence[object], n: int) -> Outcome:
    """The rate fragment's slice of a reply."""
    if int(values[0]):  # type: ignore[call-overload]
        return Outcome(True, tuple(float(v) for v in values[1 : 1 + n]))  # type: ignore[arg-type]
    index, retry, separation = values[1:4]
    return Outcome(False, (float(separation),), int(index), float(retry))  # type: ignore[arg-type]


class MemoryGcra:
    """The GCRA step in this process (the embedded default); atomic because it never awaits."""

    def __init__(self) -> None:
        self._tats: dict[str, float] = {}
        self._hits = 0

    def hit(self, keys: Sequence[str], limits: Sequence[Limit], record: bool = True) -> Outcome:
        now = time.time() * 1000
        tats = []
        for index, (key, limit) in enumerate(zip(keys, limits, strict=True)):
            tat = max(self._tats.get(key, now), now)
            if tat - now > limit.period_ms - limit.interval_ms:
                retry = tat - (limit.period_ms - limit.interval_ms) - now
                return Outcome(False, (tat - now,), index, retry)
            tats.append(tat)
        if not record:
            return Outcome(True, tuple(tat - now for tat in tats))
        separations = []
        for key, limit, tat in zip(keys, limits, tats, strict=True):
            self._tats[key] = new_tat = tat + limit.interval_ms
            separations.append(new_tat - now)
        self._hits += 1
        if self._hits % 10_000 == 0:
            self._tats = {k: v for k, v in self._tats.items() if v > now}
        return Outcome(True, tuple(separations))

    def clear(self) -> None:
        """Forget every budget spent (what a fresh process knows)."""
        self._tats.clear()


# KEYS[1]: the username's failure key. ARGV: interval ms, period ms, 1 to record a failure.
# Reply: 0 when the username may try, else the milliseconds until it may.
_FAILURES_LUA = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval, period = tonumber(ARGV[1]), tonumber(ARGV[2])
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then tat = math.max(tonumber(stored), now) end
if tat - now > period - interval then return tostring(tat - (period - interval) - now) end
if ARGV[3] == '1' then
  local new_tat = tat + interval
  redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now))
end
return '0'
"""


class LoginFailures:
    """A budget of failed logins per username (all processes share it through Redis): once it
    is spent, further attempts for that name are refused until it refills."""

    def __init__(self, limit: Limit | None, pool: RedisPool | None) -> None:
        self.limit = limit
        self.pool = pool
        self._memory = MemoryGcra()
        self._script: Any = None

    @staticmethod
    def _key(username: str) -> str:
        return f"{PREFIX}login-failures:{username.casefold()}"

    async def _step(self, username: str, record: bool) -> int:
        """Seconds until `username` may try again (0: now), recording a failure if asked."""
        if self.limit is None:
            return 0
        key = self._key(username)
        if self.pool is None:
            outcome = self._memory.hit([key], [self.limit], record=record)
            return 0 if outcome.allowed else max(1, math.ceil(outcome.retry_after_ms / 1000))
        if self._script is None:
            self._script = self.pool.client.register_script(_FAILURES_LUA)
        script = self._script
        args = [self.limit.interval_ms, self.limit.period_ms, int(record)]
        wait_ms = float(
            await self.pool.guarded("login limiter", lambda: script(keys=[key], args=args))
        )
        return max(1, math.ceil(wait_ms / 1000)) if wait_ms > 0 else 0

    async def retry_after(self, username: str) -> int:
        return await self._step(username, record=False)

    async def record_failure(self, username: str) -> None:
        await self._step(username, record=True)

    def clear(self) -> None:
        """Forget the failures counted in this process (Redis's are shared: left alone)."""
        self._memory.clear()

"""Rate limits: the GCRA step over a request's limits (a Lua fragment for Redis, the same
arithmetic in process), the figures for the RateLimit-* headers, a client address's key, and the
budgets of failed logins per account. Keys expire; each step is atomic (one script, or no await
in process)."""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import math
import string
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from taskapi.domain.names import canonical
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


@functools.lru_cache(maxsize=8192)
def address_key(address: str, ipv6_prefix: int) -> str:
    """A client address's rate-limit scope: `ip:<IPv4>`, or an IPv6 client's network of
    `ipv6_prefix` bits (`ip:2001:db8:1:2::/64`), since one host may hold a whole /64. An
    IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) counts as its IPv4 address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # not an address (e.g. "unknown"): kept, quoted, as its own scope
        return "ip:" + urllib.parse.quote(address, safe="")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address):
        return f"ip:{ip}"
    return f"ip:{ipaddress.IPv6Network((ip, ipv6_prefix), strict=False)}"


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

    def clear(self) -> None:
        """Forget every budget (as a fresh process would)."""
        self._tats.clear()

    def hit(self, keys: Sequence[str], limits: Sequence[Limit]) -> Outcome:
        now = time.time() * 1000
        tats = []
        for index, (key, limit) in enumerate(zip(keys, limits, strict=True)):
            tat = max(self._tats.get(key, now), now)
            if tat - now > limit.period_ms - limit.interval_ms:
                retry = tat - (limit.period_ms - limit.interval_ms) - now
                return Outcome(False, (tat - now,), index, retry)
            tats.append(tat)
        separations = []
        for key, limit, tat in zip(keys, limits, tats, strict=True):
            self._tats[key] = new_tat = tat + limit.interval_ms
            separations.append(new_tat - now)
        self._hits += 1
        if self._hits % 10_000 == 0:
            self._tats = {k: v for k, v in self._tats.items() if v > now}
        return Outcome(True, tuple(separations))

    def refund(self, keys: Sequence[str], limits: Sequence[Limit]) -> None:
        """Give back one request of each key's budget (as if it had not been counted)."""
        now = time.time() * 1000
        for key, limit in zip(keys, limits, strict=True):
            tat = self._tats.get(key)
            if tat is None:
                continue
            if tat - limit.interval_ms > now:
                self._tats[key] = tat - limit.interval_ms
            else:
                del self._tats[key]


# --- failed logins ---------------------------------------------------------------------------
#
# Each login attempt is charged before its password is checked, so concurrent guesses cannot
# overdraw a budget and a refusal costs no password check; a right password refunds the charge
# and makes the address known to the account. Two budgets: the account's failures from this
# address (every address has one), and its failures from all addresses that have not logged in
# to it lately (the bound on guessing it from anywhere). A known address skips the second, so
# guessers elsewhere cannot lock the owner out. Unknown and existing usernames are treated alike.


@dataclasses.dataclass(frozen=True, slots=True)
class LoginBudgets:
    """Failed logins allowed per account: from one address, and from all the addresses that
    have not logged in to it for `known_seconds`."""

    per_address: Limit
    per_account: Limit
    known_seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class LoginKeys:
    pair: str  # the account's failures from this address
    account: str  # the account's failures from addresses not known to it
    known: str  # present while this address is known to the account


def login_keys(username: str, address: str) -> LoginKeys:
    """Keys by the username's canonical form and the address's scope (which has no `|`)."""
    name = canonical(username)
    return LoginKeys(
        f"{PREFIX}login:pair:{address}|{name}",
        f"{PREFIX}login:account:{name}",
        f"{PREFIX}login:known:{address}|{name}",
    )


@dataclasses.dataclass(frozen=True, slots=True)
class LoginCharge:
    """An attempt's charge: `retry_after` seconds when refused (0: admitted), and whether the
    account's budget for unknown addresses was charged (so a refund gives that back too)."""

    keys: LoginKeys | None  # None: no budgets (rate limiting off)
    retry_after: int = 0
    account_charged: bool = False


class LoginFailures(Protocol):
    """The failed-login budgets, in process or in Redis."""

    async def charge(self, username: str, address: str) -> LoginCharge:
        """Charge an attempt before its password is checked; refused when a budget is spent."""
        ...

    async def succeeded(self, charge: LoginCharge) -> None:
        """The password was right: refund the charge and make the address known."""
        ...


def _seconds(milliseconds: float) -> int:
    return max(1, math.ceil(milliseconds / 1000))


class MemoryLoginFailures:
    """The budgets in this process (the embedded default); atomic because it never awaits."""

    def __init__(self, budgets: LoginBudgets | None) -> None:
        self.budgets = budgets
        self._gcra = MemoryGcra()
        self._known: dict[str, float] = {}  # key → until when (time.time())
        self._prune_at = 10_000

    def clear(self) -> None:
        self._gcra.clear()
        self._known.clear()

    def _budgets(self, keys: LoginKeys, account: bool) -> tuple[list[str], list[Limit]]:
        """The keys and limits of a charge: the pair's, and the account's when `account`."""
        assert self.budgets is not None
        if account:
            return [keys.pair, keys.account], [self.budgets.per_address, self.budgets.per_account]
        return [keys.pair], [self.budgets.per_address]

    async def charge(self, username: str, address: str) -> LoginCharge:
        if self.budgets is None:
            return LoginCharge(None)
        keys = login_keys(username, address)
        unknown = self._known.get(keys.known, 0.0) <= time.time()
        outcome = self._gcra.hit(*self._budgets(keys, unknown))
        if not outcome.allowed:
            return LoginCharge(keys, _seconds(outcome.retry_after_ms))
        return LoginCharge(keys, 0, unknown)

    async def succeeded(self, charge: LoginCharge) -> None:
        keys = charge.keys
        if self.budgets is None or keys is None or charge.retry_after:
            return
        self._gcra.refund(*self._budgets(keys, charge.account_charged))
        now = time.time()
        if len(self._known) >= self._prune_at:  # forget expired addresses now and then
            self._known = {k: until for k, until in self._known.items() if until > now}
            self._prune_at = max(10_000, 2 * len(self._known))
        self._known[keys.known] = now + self.budgets.known_seconds


_LOGIN_HEADER = """if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
"""

# KEYS: pair, account, known. ARGV: (interval ms, period ms) of the pair's and the account's
# budgets. Reply: {1, account charged (0/1)}, or {0, ms until the refusing budget admits one}.
_CHARGE_LUA = (
    _LOGIN_HEADER
    + """
local unknown = redis.call('EXISTS', KEYS[3]) == 0
local budgets = unknown and 2 or 1
local tats = {}
for i = 1, budgets do
  local interval, period = tonumber(ARGV[2*i - 1]), tonumber(ARGV[2*i])
  local stored = redis.call('GET', KEYS[i])
  local tat = now
  if stored then tat = math.max(tonumber(stored), now) end
  if tat - now > period - interval then return {0, tostring(tat - (period - interval) - now)} end
  tats[i] = tat + interval
end
for i = 1, budgets do
  redis.call('SET', KEYS[i], tostring(tats[i]), 'PX', math.ceil(tats[i] - now))
end
return {1, budgets - 1}
"""
)

# KEYS: pair, account, known. ARGV: the pair's and the account's intervals (ms), 1 when the
# account was charged, how long the address stays known (ms).
_SUCCEEDED_LUA = (
    _LOGIN_HEADER
    + """
for i = 1, 1 + tonumber(ARGV[3]) do
  local stored = redis.call('GET', KEYS[i])
  if stored then
    local tat = tonumber(stored) - tonumber(ARGV[i])
    if tat > now then
      redis.call('SET', KEYS[i], tostring(tat), 'PX', math.ceil(tat - now))
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
redis.call('SET', KEYS[3], '1', 'PX', ARGV[4])
return 0
"""
)


class RedisLoginFailures:
    """The budgets in Redis, shared by every process: one script (one round trip) to charge
    an attempt, one to record a success."""

    def __init__(self, budgets: LoginBudgets | None, pool: RedisPool) -> None:
        self.budgets = budgets
        self.pool = pool
        self._scripts: dict[str, Any] = {}

    def _script(self, lua: str) -> Any:
        script = self._scripts.get(lua)
        if script is None:
            script = self._scripts[lua] = self.pool.client.register_script(lua)
        return script

    async def charge(self, username: str, address: str) -> LoginCharge:
        if self.budgets is None:
            return LoginCharge(None)
        keys = login_keys(username, address)
        pair, account = self.budgets.per_address, self.budgets.per_account
        script = self._script(_CHARGE_LUA)
        reply = await self.pool.guarded(
            "login limiter",
            lambda: script(
                keys=[keys.pair, keys.account, keys.known],
                args=[pair.interval_ms, pair.period_ms, account.interval_ms, account.period_ms],
            ),
        )
        admitted, value = int(reply[0]), reply[1]
        if not admitted:
            return LoginCharge(keys, _seconds(float(value)))
        return LoginCharge(keys, 0, bool(int(value)))

    async def succeeded(self, charge: LoginCharge) -> None:
        keys = charge.keys
        if self.budgets is None or keys is None or charge.retry_after:
            return
        budgets = self.budgets
        args = [
            budgets.per_address.interval_ms,
            budgets.per_account.interval_ms,
            int(charge.account_charged),
            math.ceil(budgets.known_seconds * 1000),
        ]
        script = self._script(_SUCCEEDED_LUA)
        await self.pool.guarded(
            "login limiter",
            lambda: script(keys=[keys.pair, keys.account, keys.known], args=args),
        )

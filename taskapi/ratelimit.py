"""Rate limits on quart-rate-limiter, made atomic and shared.

The library supplies the hooks, the limit type and the keys; two of its defects are replaced
here (see DEPENDENCIES.md): its Redis store checks then sets in two round trips (not atomic,
no TTL), and its default key trusts the client's X-Forwarded-For. Our check-and-update is one
GCRA step over every limit of the request at once: a Lua script in Redis (one round trip,
Redis's own clock, keys that expire) or the same arithmetic in process.

Every view states its decision: `@default_limits`, `@limited("login")` (defaults plus the named
limit) or `@exempt`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from quart import Quart, Response, current_app, g, request
from quart_rate_limiter import QUART_RATE_LIMITER_EXEMPT_ATTRIBUTE, RateLimit, RateLimiter

from taskapi.auth.guard import CACHED_ATTRIBUTE
from taskapi.auth.tokens import peek_access_claims
from taskapi.errors import APIError
from taskapi.redis_pool import RedisPool, RedisUnavailable
from taskapi.revocation import PREFIX as REVOKED_PREFIX

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

DECISION_ATTRIBUTE = "_taskapi_rate_decision"
NAMED_ATTRIBUTE = "_taskapi_rate_limits"
UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_LIMIT = re.compile(r"^\s*(\d+)\s*(?:per|/)\s*(\d+)?\s*(second|minute|hour|day)s?\s*$", re.I)


def parse_limits(text: str) -> list[RateLimit]:
    """'200 per day;50 per hour' → limits; also '5/minute' and '10 per 30 seconds'."""
    limits = []
    for part in filter(None, (p.strip() for p in re.split(r"[;,]", text))):
        match = _LIMIT.match(part)
        if not match or int(match.group(1)) < 1:
            raise ValueError(f"not a rate limit: {part!r} (expected e.g. '50 per hour')")
        count, multiple, unit = int(match.group(1)), int(match.group(2) or 1), match.group(3)
        limits.append(RateLimit(count, timedelta(seconds=multiple * UNITS[unit.lower()])))
    return limits


# --- the explicit decision on every view -----------------------------------------------------


def default_limits(view: F) -> F:
    setattr(view, DECISION_ATTRIBUTE, "default")
    return view


def limited(*names: str) -> Callable[[F], F]:
    def decorator(view: F) -> F:
        setattr(view, DECISION_ATTRIBUTE, "named")
        setattr(view, NAMED_ATTRIBUTE, names)
        return view

    return decorator


def exempt(view: F) -> F:
    setattr(view, DECISION_ATTRIBUTE, "exempt")
    setattr(view, QUART_RATE_LIMITER_EXEMPT_ATTRIBUTE, True)
    return view


# --- who is asking ----------------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    return tuple(
        ipaddress.ip_network(p.strip(), strict=False) for p in text.split(",") if p.strip()
    )


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def is_trusted_peer(trusted: Sequence[Network]) -> bool:
    """Whether the request's TCP peer is one of the trusted proxies."""
    return bool(trusted) and _is_trusted(request.remote_addr or "", trusted)


def client_ip(trusted: Sequence[Network]) -> str:
    """The peer address, or, behind trusted proxies, the first untrusted hop of X-Forwarded-For
    read from the right (the entries further left are the client's own words)."""
    peer = request.remote_addr or "unknown"
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getlist("X-Forwarded-For")).split(",")]
    hops = [h for h in hops if h]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


# --- the GCRA step ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: RateLimit  # the limit the headers describe
    remaining: int
    reset_seconds: int
    retry_after: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class GcraResult:
    """When allowed: each limit's separation (ms) after the update in `values`. When not: the
    rejecting limit's `index` and [retry_after_ms, separation_ms]. `revoked`: the token's
    revocation, when it was asked for and the step ran in Redis; else None."""

    allowed: bool
    index: int
    values: list[float]
    revoked: bool | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RateStep:
    """A GCRA step the limiter left to the auth guard (a cached GET with a valid token). The
    guard must settle it before it answers or touches the database: inside the response
    cache's lookup script (`apply` the outcome), or on its own (`run`)."""

    keys: list[str]
    limits: list[RateLimit]
    limiter: SharedRateLimiter

    def apply(self, result: GcraResult | None) -> None:
        """Settle with the outcome of the step run elsewhere (None: Redis did not answer)."""
        self.limiter.settle(self.limits, result)

    async def run(self) -> None:
        """Run the step now, alone, and settle it: 429 or the headers' figures."""
        try:
            result: GcraResult | None = await self.limiter.backend.hit(self.keys, self.limits)
        except RedisUnavailable:
            result = None
        self.apply(result)


class GcraBackend(Protocol):
    async def hit(
        self, keys: Sequence[str], limits: Sequence[RateLimit], revoked_key: bytes | None = None
    ) -> GcraResult: ...


class MemoryGcra:
    """The GCRA step in this process (the embedded default); atomic because it never awaits."""

    def __init__(self) -> None:
        self._tats: dict[str, float] = {}
        self._hits = 0

    async def hit(
        self, keys: Sequence[str], limits: Sequence[RateLimit], revoked_key: bytes | None = None
    ) -> GcraResult:
        now = time.time() * 1000
        tats = []
        for index, (key, limit) in enumerate(zip(keys, limits, strict=True)):
            interval, period = limit.inverse * 1000, limit.period.total_seconds() * 1000
            tat = max(self._tats.get(key, now), now)
            if tat - now > period - interval:
                return GcraResult(False, index, [tat - (period - interval) - now, tat - now])
            tats.append(tat)
        separations = []
        for key, limit, tat in zip(keys, limits, tats, strict=True):
            new_tat = tat + limit.inverse * 1000
            self._tats[key] = new_tat
            separations.append(new_tat - now)
        self._hits += 1
        if self._hits % 10_000 == 0:
            self._tats = {k: v for k, v in self._tats.items() if v > now}
        return GcraResult(True, 0, separations)


# The GCRA step in Lua, shared by the limiter's own script below and the response cache's
# lookup (which runs it first, so a cached read costs one round trip in all). KEYS[1..n]: the
# limits' keys; ARGV[1]: n, then (emission interval ms, period ms) per limit. A rejection
# returns {0, index, retry_after_ms, separation_ms}; otherwise `seps` holds each limit's
# separation after the update.
GCRA_STEP_LUA = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local n = tonumber(ARGV[1])
local tats = {}
for i = 1, n do
  local interval, period = tonumber(ARGV[2*i]), tonumber(ARGV[2*i+1])
  local stored = redis.call('GET', KEYS[i])
  local tat = now
  if stored then tat = math.max(tonumber(stored), now) end
  if tat - now > period - interval then
    return {0, i - 1, tostring(tat - (period - interval) - now), tostring(tat - now)}
  end
  tats[i] = tat
end
local seps = {}
for i = 1, n do
  local new_tat = tats[i] + tonumber(ARGV[2*i])
  redis.call('SET', KEYS[i], tostring(new_tat), 'PX', math.ceil(new_tat - now))
  seps[i] = tostring(new_tat - now)
end
"""

# The limiter's script: the step, then (when KEYS has one more) the existence of the request
# token's revocation key, which rides along for the auth guard. {1, revoked or -1, seps...}.
GCRA_LUA = (
    GCRA_STEP_LUA
    + """
local revoked = -1
if #KEYS > n then revoked = redis.call('EXISTS', KEYS[n + 1]) end
local out = {1, revoked}
for i = 1, n do out[#out + 1] = seps[i] end
return out
"""
)


def gcra_args(limits: Sequence[RateLimit]) -> list[float]:
    """ARGV of the GCRA step for these limits."""
    args: list[float] = [len(limits)]
    for limit in limits:
        args += [limit.inverse * 1000, limit.period.total_seconds() * 1000]
    return args


def gcra_rejection(result: Sequence[Any]) -> GcraResult | None:
    """The step's rejection, read off a script's reply; None when the request is allowed."""
    if int(result[0]):
        return None
    return GcraResult(False, int(result[1]), [float(v) for v in result[2:4]])


class RedisGcra:
    """The GCRA step as one Lua script: every limit checked and updated in one round trip."""

    def __init__(self, pool: RedisPool) -> None:
        self.pool = pool
        self._script: Any = None

    @staticmethod
    def redis_keys(keys: Sequence[str]) -> list[str | bytes]:
        return [f"taskapi:rl:{key}" for key in keys]

    async def hit(
        self, keys: Sequence[str], limits: Sequence[RateLimit], revoked_key: bytes | None = None
    ) -> GcraResult:
        if self._script is None:
            self._script = self.pool.client.register_script(GCRA_LUA)
        args = gcra_args(limits)
        redis_keys = self.redis_keys(keys)
        if revoked_key is not None:
            redis_keys.append(revoked_key)
        script = self._script
        result = await self.pool.guarded("rate limiter", lambda: script(keys=redis_keys, args=args))
        rejection = gcra_rejection(result)
        if rejection is not None:
            return rejection
        revoked = None if int(result[1]) < 0 else bool(int(result[1]))
        return GcraResult(True, 0, [float(v) for v in result[2:]], revoked)


# --- the limiter ------------------------------------------------------------------------------


class SharedRateLimiter(RateLimiter):
    """quart-rate-limiter with an atomic, shared GCRA step and per-app named limits."""

    def __init__(
        self,
        app: Quart,
        *,
        backend: GcraBackend,
        defaults: list[RateLimit],
        named: dict[str, list[RateLimit]],
        enabled: bool,
        fail_open: bool,
        trusted_proxies: Sequence[Network],
        # True only with Redis behind both the limiter and the response cache
        defer_cached_views: bool = False,
    ) -> None:
        self.backend = backend
        self.defer_cached_views = defer_cached_views
        self.named = named
        self.fail_open = fail_open
        self.trusted_proxies = tuple(trusted_proxies)
        super().__init__(key_function=self._client_key, default_limits=defaults)
        self.init_app(app, enabled=enabled)

    async def _client_key(self) -> str:
        claims = peek_access_claims()
        if claims is not None:
            return f"user:{claims.user_id}"
        return f"ip:{client_ip(self.trusted_proxies)}"

    def _get_limits_for_view_function(
        self, view_func: Callable[..., Any], blueprint: Any
    ) -> list[RateLimit]:
        if view_func is None or getattr(view_func, QUART_RATE_LIMITER_EXEMPT_ATTRIBUTE, False):
            return []
        limits = list(self._default_rate_limits)
        for name in getattr(view_func, NAMED_ATTRIBUTE, ()):
            limits += self.named[name]
        return limits

    async def _before_request(self) -> None:
        if not current_app.config["QUART_RATE_LIMITER_ENABLED"]:
            return
        endpoint = request.endpoint
        view = current_app.view_functions.get(endpoint)
        limits = self._get_limits_for_view_function(view, None)
        if not limits:
            return
        keys = [await self._create_key(endpoint, limit) for limit in limits]
        claims = peek_access_claims()
        if (
            claims is not None
            and request.method in ("GET", "HEAD")
            and self.defer_cached_views
            and getattr(view, CACHED_ATTRIBUTE, None) is not None
        ):
            # A cached read: the auth guard runs this step inside the cache's lookup script
            # (one round trip for limit, revocation and cached answer) and settles it.
            g._rate_step = RateStep(keys, limits, self)
            return
        revoked_key = REVOKED_PREFIX + claims.jti.encode() if claims is not None else None
        try:
            result: GcraResult | None = await self.backend.hit(keys, limits, revoked_key)
        except RedisUnavailable:
            result = None
        if claims is not None and result is not None and result.revoked is not None:
            g._revocation_prefetch = (claims.jti, result.revoked)  # for the auth guard
        self.settle(limits, result)

    def settle(self, limits: Sequence[RateLimit], result: GcraResult | None) -> None:
        """Apply a GCRA step's outcome (None: Redis could not answer): 429, or the headers'
        figures for `_after_request`."""
        if result is None:
            if self.fail_open:
                return
            raise APIError(503, "Rate limiting is unavailable. Try again shortly.")
        values = result.values
        if not result.allowed:
            retry_after = max(1, math.ceil(values[0] / 1000))
            g._rate_decision = Decision(
                False, limits[result.index], 0, math.ceil(values[1] / 1000), retry_after
            )
            raise APIError(
                429,
                "Too many requests. Try again later.",
                code="rate_limited",
                headers={"Retry-After": str(retry_after)},
            )
        shortest = min(range(len(limits)), key=lambda i: limits[i].period.total_seconds())
        limit, separation = limits[shortest], values[shortest]
        remaining = int((limit.period.total_seconds() * 1000 - separation) / (limit.inverse * 1000))
        g._rate_decision = Decision(True, limit, max(0, remaining), math.ceil(separation / 1000))

    async def _after_request(self, response: Response) -> Response:
        step: RateStep | None = g.pop("_rate_step", None)
        if step is not None:
            # never settled (the guard settles every step it takes; this is a safety net):
            # the request still counts against the limits
            with contextlib.suppress(RedisUnavailable):
                await self.backend.hit(step.keys, step.limits)
        decision: Decision | None = g.get("_rate_decision")
        if decision is not None:
            response.headers["RateLimit-Limit"] = str(decision.limit.count)
            response.headers["RateLimit-Remaining"] = str(decision.remaining)
            response.headers["RateLimit-Reset"] = str(decision.reset_seconds)
        return response

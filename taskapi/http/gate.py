"""The request gate: a view's decorators declare its policy (rate limits, the token it needs,
the cache it is served from); one before-request step carries the policy out and leaves one
`Admission` for the view and for the after-request step.

With Redis, the step's shared-state work is one composed script: the token's revocation, the
rate limit (keyed by user only once the token proved unrevoked, else by address) and the
cached answer. Over-limit and revoked callers never reach the database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from quart import Quart, Response, g, request
from quart_schema import security_scheme

from taskapi.domain.cache import Entry, Found, Slot, slot_for
from taskapi.domain.limits import (
    Decision,
    Limit,
    MemoryGcra,
    Outcome,
    address_key,
    decide,
    gcra_part,
    limit_keys,
    read_outcome,
)
from taskapi.domain.revocation import read_revoked, revocation_part
from taskapi.domain.viewer import Viewer
from taskapi.errors import APIError
from taskapi.http.db_scope import request_connection
from taskapi.http.proxies import client_ip
from taskapi.http.request_ids import assign_request_id, stamp
from taskapi.http.responses import options_as_204
from taskapi.http.state import AppState
from taskapi.http.tokens import ACCESS, REFRESH, TokenClaims, read_bearer_token
from taskapi.infra.redis_pool import RedisUnavailable
from taskapi.infra.redis_script import Part, ScriptBook

F = TypeVar("F", bound=Callable[..., Any])
LIMITS_ATTRIBUTE = "_taskapi_limits"
AUTH_ATTRIBUTE = "_taskapi_auth"
CACHE_ATTRIBUTE = "_taskapi_cache"
BEARER = [{"bearerAuth": []}]
READS = ("GET", "HEAD")
# not stored with a cached answer: the gate and the after-request steps add them afresh
SKIPPED_HEADERS = frozenset(
    {"content-length", "x-cache", "x-request-id"}
    | {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"}
)


# --- the declarations ------------------------------------------------------------------------


def default_limits(view: F) -> F:
    """The default limits (TASKAPI_RATELIMIT_DEFAULT)."""
    setattr(view, LIMITS_ATTRIBUTE, ("default",))
    return view


def limited(*names: str) -> Callable[[F], F]:
    """The default limits and the named ones (e.g. "login": TASKAPI_RATELIMIT_LOGIN)."""

    def decorator(view: F) -> F:
        setattr(view, LIMITS_ATTRIBUTE, ("default", *names))
        return view

    return decorator


def exempt(view: F) -> F:
    """No rate limit (health probes, the docs)."""
    setattr(view, LIMITS_ATTRIBUTE, ())
    return view


def _requires(kind: str) -> Callable[[F], F]:
    def decorator(view: F) -> F:
        setattr(view, AUTH_ATTRIBUTE, kind)
        return security_scheme(BEARER)(view)  # type: ignore[no-any-return]

    return decorator


login_required = _requires(ACCESS)
refresh_token_required = _requires(REFRESH)


def cached(kind: str) -> Callable[[F], F]:
    """GET answers (200) are cached per caller as `kind` ("list" or "detail")."""

    def decorator(view: F) -> F:
        setattr(view, CACHE_ATTRIBUTE, kind)
        return view

    return decorator


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    limit_names: tuple[str, ...] | None  # None: the view did not say
    auth: str | None
    cache: str | None


def policy_of(view: Callable[..., Any]) -> Policy:
    return Policy(
        getattr(view, LIMITS_ATTRIBUTE, None),
        getattr(view, AUTH_ATTRIBUTE, None),
        getattr(view, CACHE_ATTRIBUTE, None),
    )


# --- the outcome -----------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Admission:
    """What the gate found out about this request."""

    policy: Policy
    address: str  # the client's rate-limit scope (`address_key`)
    claims: TokenClaims | None = None
    viewer: Viewer | None = None
    rate: Decision | None = None
    cache: Found | None = None  # set when the cache was consulted
    hit: bool = False


def current_admission() -> Admission:
    admission: Admission = g.admission
    return admission


def current_viewer() -> Viewer:
    viewer = current_admission().viewer
    if viewer is None:
        raise RuntimeError("the view does not require a token (no @login_required)")
    return viewer


def current_claims() -> TokenClaims:
    claims = current_admission().claims
    if claims is None:
        raise RuntimeError("the view does not require a token")
    return claims


# --- the step --------------------------------------------------------------------------------


class Gate:
    """Runs every view's policy: rate limit, token, revocation, user, cached answer."""

    def __init__(
        self,
        state: AppState,
        *,
        limits: dict[str, list[Limit]],
    ) -> None:
        self.state = state
        self.settings = state.settings
        self.limits = limits
        self.memory_gcra = MemoryGcra()
        self.scripts = ScriptBook(state.redis) if state.redis is not None else None
        self._policies: dict[str, tuple[Policy, tuple[Limit, ...]]] = {}

    def init_app(self, app: Quart) -> None:
        app.before_request(self.admit)
        app.after_request(self.finish)
        app.extensions["taskapi.gate"] = self
        self.app = app

    def policy(self, endpoint: str) -> tuple[Policy, tuple[Limit, ...]]:
        known = self._policies.get(endpoint)
        if known is None:
            policy = policy_of(self.app.view_functions[endpoint])
            names = policy.limit_names or ()
            limits = tuple(lim for name in names for lim in self.limits[name])
            if not self.settings.ratelimit_enabled:
                limits = ()
            known = self._policies[endpoint] = (policy, limits)
        return known

    async def admit(self) -> Response | None:
        """The one before-request step."""
        assign_request_id()
        endpoint = request.endpoint
        if endpoint is None or endpoint not in self.app.view_functions:
            return None
        policy, limits = self.policy(endpoint)
        address = address_key(client_ip(request), self.settings.ratelimit_ipv6_prefix)
        admission = Admission(policy, address)
        g.admission = admission
        kind = policy.auth if request.method != "OPTIONS" else None
        if kind is None:
            await self._limit_alone(admission, endpoint, limits, address)
            return None
        try:
            claims = read_bearer_token(kind)
        except APIError:
            await self._limit_alone(admission, endpoint, limits, address)  # 429 before 401
            raise
        admission.claims = claims
        # an access token's holder has its own budget once the token proves unrevoked
        user = f"user:{claims.user_id}" if kind == ACCESS else None
        role = self.state.roles.cached_role(claims)
        slot = self._slot(policy, claims.user_id, role)
        revoked, found = await self._shared_step(admission, endpoint, limits, address, user, slot)
        self._refuse_revoked(revoked)
        if role is None:
            role = await self.state.roles.role_of(request_connection, claims)
            if role is None:
                # not a user: counted against its address too, then refused
                await self._limit_alone(admission, endpoint, limits, address)
                raise APIError(401, "The token's user no longer exists.", code="token_invalid")
            slot = self._slot(policy, claims.user_id, role)
            if slot is not None:
                found = await self._cache_alone(slot)
        admission.viewer = Viewer(claims.user_id, role)
        if slot is None:
            return None
        admission.cache = found or Found(None)
        if admission.cache.entry is None:
            return None
        admission.hit = True
        entry = admission.cache.entry
        response = Response(entry.body, status=entry.status, headers=entry.headers)
        response.headers["X-Cache"] = "HIT"
        return response

    def _slot(self, policy: Policy, user_id: int, role: str | None) -> Slot | None:
        if policy.cache is None or role is None or self.state.cache is None:
            return None
        if request.method not in READS:
            return None
        task_id = (request.view_args or {}).get("task_id")
        origin = f"{request.scheme}://{request.host}"
        query = request.query_string.decode("latin-1")
        return slot_for(policy.cache, Viewer(user_id, role), task_id, origin, query)

    async def _shared_step(
        self,
        admission: Admission,
        endpoint: str,
        limits: tuple[Limit, ...],
        address: str,
        user: str | None,
        slot: Slot | None,
    ) -> tuple[bool | None, Found | None]:
        """Revocation, rate limit and cached answer for a verified token: one round trip with
        Redis. Returns (revoked or None when unknown, the cache lookup or None)."""
        claims = admission.claims
        assert claims is not None
        scope_keys = limit_keys(user or address, endpoint, limits)
        fallback = limit_keys(address, endpoint, limits) if user is not None else None
        if self.scripts is None:
            revoked = await self.state.revocations.is_revoked(claims.jti)
            if limits:
                keys = fallback if (revoked and fallback is not None) else scope_keys
                self._apply(admission, limits, self.memory_gcra.hit(keys, limits))
            found = None
            if slot is not None and not revoked and self.state.cache is not None:
                found = await self.state.cache.lookup(slot)
            return revoked, found
        parts: list[Part] = [revocation_part(claims.jti)]
        if limits:
            parts.append(gcra_part(scope_keys, limits, fallback))
        cache = self.state.cache
        if slot is not None and cache is not None:
            parts.append(cache.part(slot))
        try:
            reply = await self.scripts.run("gate", parts)
        except RedisUnavailable:
            self._apply(admission, limits, None)
            return None, Found(None) if slot is not None else None
        rate = reply["rate"]
        if rate is not None:
            self._apply(admission, limits, read_outcome(rate, len(limits)))
        revoked = read_revoked(reply["revoked"] or [0])
        values = reply["cache"]
        found = None
        if slot is not None and cache is not None and values is not None and not revoked:
            found = cache.read(slot, values)
        return revoked, found

    async def _limit_alone(
        self, admission: Admission, endpoint: str, limits: tuple[Limit, ...], scope: str
    ) -> None:
        if not limits:
            return
        keys = limit_keys(scope, endpoint, limits)
        if self.scripts is None:
            self._apply(admission, limits, self.memory_gcra.hit(keys, limits))
            return
        try:
            reply = await self.scripts.run("rate limiter", [gcra_part(keys, limits)])
        except RedisUnavailable:
            self._apply(admission, limits, None)
            return
        self._apply(admission, limits, read_outcome(reply["rate"] or [], len(limits)))

    async def _cache_alone(self, slot: Slot) -> Found:
        cache = self.state.cache
        assert cache is not None
        if self.scripts is None:
            return await cache.lookup(slot)
        try:
            reply = await self.scripts.run("cache", [cache.part(slot)])
        except RedisUnavailable:
            return Found(None)
        return cache.read(slot, reply["cache"] or [])

    def _apply(
        self, admission: Admission, limits: tuple[Limit, ...], outcome: Outcome | None
    ) -> None:
        """A rate step's outcome (None: Redis could not answer): 429, or the headers' figures."""
        if not limits:
            return
        if outcome is None:
            if self.settings.ratelimit_fail_open:
                return
            raise APIError(503, "Rate limiting is unavailable. Try again shortly.")
        decision = decide(limits, outcome)
        admission.rate = decision
        if not decision.allowed:
            raise APIError(
                429,
                "Too many requests. Try again later.",
                code="rate_limited",
                headers={"Retry-After": str(decision.retry_after)},
            )

    def _refuse_revoked(self, revoked: bool | None) -> None:
        """401 when revoked; when unknown (Redis down), the configured policy."""
        if revoked is None:
            if self.settings.revocation_fail_open:
                return
            raise APIError(
                503,
                "Cannot check the token right now. Try again shortly.",
                code="service_unavailable",
            )
        if revoked:
            raise APIError(401, "Token has been revoked.", code="token_revoked")

    async def finish(self, response: Response) -> Response:
        """The one after-request step: rate-limit headers; a cached route's X-Cache, and its
        fresh 200 answer stored; the request id and security headers."""
        if request.method == "OPTIONS":
            options_as_204(response)
        admission: Admission | None = g.get("admission")
        if admission is not None:
            await self._settle(admission, response)
        stamp(response)
        return response

    async def _settle(self, admission: Admission, response: Response) -> None:
        decision = admission.rate
        if decision is not None:
            response.headers["RateLimit-Limit"] = str(decision.limit)
            response.headers["RateLimit-Remaining"] = str(decision.remaining)
            response.headers["RateLimit-Reset"] = str(decision.reset_seconds)
        found = admission.cache
        if found is None or admission.hit:
            return
        response.headers["X-Cache"] = "MISS"
        cache = self.state.cache
        if found.key is not None and response.status_code == 200 and cache is not None:
            headers = {
                k: v for k, v in response.headers.items() if k.lower() not in SKIPPED_HEADERS
            }
            entry = Entry(200, headers, await response.get_data())
            await cache.put(found.key, admission.policy.cache or "list", entry)

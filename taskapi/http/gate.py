"""The request gate: one before-request step carries out the view's policy (`http/policy.py`)
and leaves one `Admission` for the view and for the one after-request step.

The shared-state work of a request (revocation, rate limit, cached answer) is one call to the
gatekeeper port: one round trip with Redis. Over-limit and revoked callers never reach the
database; a token whose role is not remembered has it read from the database after that call.
"""

from __future__ import annotations

import dataclasses

from quart import Quart, Response, g, request

from taskapi.domain.limits import Decision, address_key, decide, limit_keys
from taskapi.domain.parts import Parts
from taskapi.domain.viewer import Viewer
from taskapi.errors import APIError
from taskapi.http.db_scope import request_connection
from taskapi.http.policy import Policy, policy_of
from taskapi.http.proxies import client_ip
from taskapi.http.request_ids import assign_request_id, echo_request_id
from taskapi.http.responses import options_as_204
from taskapi.http.security_headers import add_security_headers
from taskapi.http.tokens import ACCESS, TokenClaims, read_bearer_token
from taskapi.infra.stores import (
    CacheSlot,
    Entry,
    GateAnswer,
    GateQuery,
    Limit,
    Lookup,
    StoreUnavailable,
)

READS = ("GET", "HEAD")
# not stored with a cached answer: the gate and the after-request step add them afresh
UNCACHED_HEADERS = frozenset(
    {"content-length", "x-cache", "x-request-id"}
    | {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"}
)
UNKNOWN = GateAnswer()  # the answer when the stores cannot give one


@dataclasses.dataclass(slots=True)
class Admission:
    """What the gate found out about this request."""

    policy: Policy
    address: str  # the client's rate-limit scope (`address_key`)
    claims: TokenClaims | None = None
    viewer: Viewer | None = None
    rate: Decision | None = None
    slot: CacheSlot | None = None  # set when the cache was consulted
    lookup: Lookup | None = None  # where to store a fresh answer (None: don't)
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


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """A route's policy and the limits it comes to, worked out once per endpoint."""

    endpoint: str
    policy: Policy
    limits: tuple[Limit, ...]


class Gate:
    """Runs every view's policy: rate limit, token, revocation, user, cached answer."""

    def __init__(self, parts: Parts, *, limits: dict[str, list[Limit]]) -> None:
        self.parts = parts
        self.settings = parts.settings
        self.limits = limits
        self._routes: dict[str, Route] = {}

    def init_app(self, app: Quart) -> None:
        app.before_request(self.admit)
        app.after_request(self.finish)
        self.app = app

    def route(self, endpoint: str) -> Route:
        known = self._routes.get(endpoint)
        if known is None:
            policy = policy_of(self.app.view_functions[endpoint])
            names = policy.limit_names or ()
            limits = tuple(lim for name in names for lim in self.limits[name])
            if not self.settings.ratelimit_enabled:
                limits = ()
            known = self._routes[endpoint] = Route(endpoint, policy, limits)
        return known

    async def admit(self) -> Response | None:
        """The one before-request step."""
        assign_request_id()
        endpoint = request.endpoint
        if endpoint is None or endpoint not in self.app.view_functions:
            return None
        route = self.route(endpoint)
        address = address_key(client_ip(request), self.settings.ratelimit_ipv6_prefix)
        admission = Admission(route.policy, address)
        g.admission = admission
        kind = route.policy.auth if request.method != "OPTIONS" else None
        if kind is None:
            await self._limit(admission, route, address)
            return None
        try:
            claims = read_bearer_token(kind)
        except APIError:
            await self._limit(admission, route, address)  # 429 before 401
            raise
        admission.claims = claims
        roles = self.parts.roles
        role = roles.cached_role(claims.user_id, claims.generation)
        slot = self._slot(route, claims.user_id, role)
        # an access token's holder has its own budget once the token proves unrevoked
        user = f"user:{claims.user_id}" if kind == ACCESS else address
        query = GateQuery(
            jti=claims.jti,
            limits=route.limits,
            keys=limit_keys(user, endpoint, route.limits),
            fallback_keys=limit_keys(address, endpoint, route.limits) if kind == ACCESS else None,
            slot=slot,
        )
        answer = await self._ask(admission, route, query)
        if answer.revoked:
            raise APIError(401, "Token has been revoked.", code="token_revoked")
        if role is None:
            role = await roles.role_of(request_connection, claims.user_id, claims.generation)
            if role is None:
                # not a user: counted against its address too, then refused
                await self._limit(admission, route, address)
                raise APIError(401, "The token's user no longer exists.", code="token_invalid")
            slot = self._slot(route, claims.user_id, role)
            if slot is not None:
                answer = await self._ask(admission, route, GateQuery(slot=slot))
        admission.viewer = Viewer(claims.user_id, role)
        if slot is None:
            return None
        admission.slot, admission.lookup = slot, answer.lookup
        entry = answer.lookup.entry if answer.lookup is not None else None
        if entry is None:
            return None
        admission.hit = True
        response = Response(entry.body, status=entry.status, headers=entry.headers)
        response.headers["X-Cache"] = "HIT"
        return response

    def _slot(self, route: Route, user_id: int, role: str | None) -> CacheSlot | None:
        kind = route.policy.cache
        if kind is None or role is None or request.method not in READS:
            return None
        task_id = (request.view_args or {}).get("task_id")
        origin = f"{request.scheme}://{request.host}"
        query = request.query_string.decode("latin-1")
        return self.parts.cache.slot(kind, Viewer(user_id, role), task_id, origin, query)

    async def _limit(self, admission: Admission, route: Route, scope: str) -> None:
        """The route's limits on `scope` alone (no token, or one that failed)."""
        if route.limits:
            keys = limit_keys(scope, route.endpoint, route.limits)
            await self._ask(admission, route, GateQuery(limits=route.limits, keys=keys))

    async def _ask(self, admission: Admission, route: Route, query: GateQuery) -> GateAnswer:
        """One call to the shared stores; 429 when a limit refuses. When the stores cannot
        answer, the rate limit's and the revocation's policies (fail open, or 503)."""
        try:
            answer = await self.parts.gatekeeper.admit(query)
        except StoreUnavailable:
            if query.limits and not self.settings.ratelimit_fail_open:
                raise APIError(503, "Rate limiting is unavailable. Try again shortly.") from None
            if query.jti is not None and not self.settings.revocation_fail_open:
                raise APIError(
                    503,
                    "Cannot check the token right now. Try again shortly.",
                    code="service_unavailable",
                ) from None
            return UNKNOWN
        if answer.outcome is not None:
            decision = admission.rate = decide(route.limits, answer.outcome)
            if not decision.allowed:
                raise APIError(
                    429,
                    "Too many requests. Try again later.",
                    code="rate_limited",
                    headers={"Retry-After": str(decision.retry_after)},
                )
        return answer

    async def finish(self, response: Response) -> Response:
        """The one after-request step: rate-limit headers; a cached route's X-Cache, and its
        fresh 200 answer stored; the request id and security headers."""
        if request.method == "OPTIONS":
            options_as_204(response)
        admission: Admission | None = g.get("admission")
        if admission is not None:
            await self._after(admission, response)
        echo_request_id(response)
        add_security_headers(response)
        return response

    async def _after(self, admission: Admission, response: Response) -> None:
        decision = admission.rate
        if decision is not None:
            response.headers["RateLimit-Limit"] = str(decision.limit)
            response.headers["RateLimit-Remaining"] = str(decision.remaining)
            response.headers["RateLimit-Reset"] = str(decision.reset_seconds)
        slot = admission.slot
        if slot is None or admission.hit:
            return
        response.headers["X-Cache"] = "MISS"
        lookup = admission.lookup
        if lookup is not None and response.status_code == 200:
            headers = {
                k: v for k, v in response.headers.items() if k.lower() not in UNCACHED_HEADERS
            }
            entry = Entry(200, headers, await response.get_data(as_text=False))
            try:
                await self.parts.answers.put(lookup.key, entry, slot.ttl)
            except StoreUnavailable:
                return

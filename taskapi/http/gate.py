"""The request gate: one before-request step carries out the view's policy (`http/policy.py`)
and leaves one `Admission` for the view and for the one after-request step.

The shared-state work of a request (revocation, rate limit, idempotency claim, cached answer)
is one call to the gatekeeper port: one round trip with Redis. Over-limit and revoked callers
never reach the database, but for one question to the revocation record when the stores
cannot vouch for a token (`domain/revocations.py`); a token whose role is not remembered has
it read from the database after that call.
"""

from __future__ import annotations

import dataclasses
from typing import cast

from quart import Quart, Response, g, request

from taskapi.domain.idempotency import kept
from taskapi.domain.limits import Decision, address_key, decide, limit_keys
from taskapi.domain.parts import Parts
from taskapi.domain.viewer import Viewer
from taskapi.errors import APIError
from taskapi.http.conditional import as_not_modified, not_modified, read_not_modified
from taskapi.http.db_scope import request_connection
from taskapi.http.idempotency import answer_to_retry, claim_of
from taskapi.http.policy import Policy, policy_of
from taskapi.http.proxies import client_ip
from taskapi.http.ratelimit_headers import RATE_HEADER_NAMES, rate_headers
from taskapi.http.request_ids import assign_request_id, echo_request_id
from taskapi.http.responses import options_as_204
from taskapi.http.security_headers import add_security_headers
from taskapi.http.tokens import ACCESS, TokenClaims, read_bearer_token
from taskapi.infra import metrics
from taskapi.infra.logs import request_id_var
from taskapi.infra.stores import (
    CacheSlot,
    Entry,
    GateAnswer,
    GateQuery,
    IdempotencyClaim,
    Limit,
    Lookup,
    StoreUnavailable,
)

READS = ("GET", "HEAD")
# not stored with a cached answer: the gate and the after-request step add them afresh
UNCACHED_HEADERS = frozenset({"content-length", "x-cache", "x-request-id"} | RATE_HEADER_NAMES)
NOTHING_KNOWN = GateAnswer()  # the answer when the stores cannot give one
UNREACHABLE = GateAnswer(revocation_unknown=True)  # likewise, for a query about a token


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
    claim: IdempotencyClaim | None = None  # the idempotency key this request holds


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


@dataclasses.dataclass(frozen=True, slots=True)
class Facts:
    """What a read's cache slot is made of: its method, origin, query string and task id."""

    method: str
    origin: str
    query: str
    task_id: int | None


@dataclasses.dataclass(slots=True)
class EdgeAdmission:
    """What the edge (`http/edge.py`) found for a cached read it did not answer itself: the
    gate carries on from it instead of asking the stores again."""

    request_id: str
    admission: Admission
    error: APIError | None = None


EDGE_ADMISSION = "taskapi.edge_admission"  # the scope key of an EdgeAdmission


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
        """The one before-request step (for a cached read the edge has already taken, it
        carries on from what the edge found)."""
        handed = cast("EdgeAdmission | None", request.scope.get(EDGE_ADMISSION))
        if handed is not None:
            request_id_var.set(handed.request_id)
            g.admission = handed.admission
            if handed.error is not None:
                raise handed.error
            return None
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
            await self._limit_by(admission, route, address)
            return None
        try:
            claims = read_bearer_token(kind)
        except APIError:
            await self._limit_by(admission, route, address)  # 429 before 401
            raise
        admission.claims = claims
        claim, bad_key = None, None
        if route.policy.idempotent and request.method == "POST":
            try:
                claim = await claim_of(claims.user_id, self.settings.idempotency_in_flight_seconds)
            except APIError as error:  # after the step: counted, and 401 for a revoked token
                bad_key = error
        facts = Facts(
            request.method,
            f"{request.scheme}://{request.host}",
            request.query_string.decode("latin-1"),
            (request.view_args or {}).get("task_id"),
        )
        roles = self.parts.roles
        role = roles.cached_role(claims.user_id, claims.generation)
        slot, answer = await self.step(admission, route, claims, role, facts, claim)
        if bad_key is not None:
            raise bad_key
        claimed = answer.claimed
        if claim is not None and claimed is not None and claimed.ours:
            admission.claim = claim  # settled by `finish`, whatever the answer
        if role is None:
            role = await roles.role_of(request_connection, claims.user_id, claims.generation)
            if role is None:
                # not a user: counted against its address too, then refused
                await self._limit_by(admission, route, address)
                raise APIError(401, "The token's user no longer exists.", code="token_invalid")
            slot = self.slot(route, claims.user_id, role, facts)
            if slot is not None:
                answer = await self.ask(admission, route, GateQuery(slot=slot))
        admission.viewer = Viewer(claims.user_id, role)
        if claim is not None and claimed is not None and not claimed.ours:
            return answer_to_retry(claim, claimed)
        entry = self.cached_answer(admission, slot, answer)
        if entry is None:
            return None
        if read_not_modified(entry.headers.get("ETag")):
            response = not_modified(entry.headers)
        else:
            response = Response(entry.body, status=entry.status, headers=entry.headers)
        response.headers["X-Cache"] = "HIT"
        return response

    async def step(
        self,
        admission: Admission,
        route: Route,
        claims: TokenClaims,
        role: str | None,
        facts: Facts,
        claim: IdempotencyClaim | None = None,
    ) -> tuple[CacheSlot | None, GateAnswer]:
        """The shared-state step of a verified token: revocation, the rate limit (the user's
        budget once the token proves unrevoked, else its address's), the idempotency claim
        and, when the role is known, the cached answer; 401 for a revoked token. When the
        stores cannot vouch for the token, the revocation record (the database) decides."""
        slot = self.slot(route, claims.user_id, role, facts)
        endpoint, limits, address = route.endpoint, route.limits, admission.address
        access = claims.kind == ACCESS
        user = f"user:{claims.user_id}" if access else address
        query = GateQuery(
            jti=claims.jti,
            limits=limits,
            keys=limit_keys(user, endpoint, limits),
            fallback_keys=limit_keys(address, endpoint, limits) if access else None,
            claim=claim,
            slot=slot,
        )
        answer = await self.ask(admission, route, query)
        if answer.revoked:
            raise APIError(401, "Token has been revoked.", code="token_revoked")
        record = self.parts.revocation_record
        if answer.revocation_unknown or not record.trusted:
            incomplete = answer.revocation_unknown and answer is not UNREACHABLE
            if await record.revoked_in_record(claims.jti, copy_incomplete=incomplete):
                raise APIError(401, "Token has been revoked.", code="token_revoked")
            if incomplete and (claim is not None or slot is not None):
                # the store skipped them for an unproven token: now it is proven
                again = await self.ask(admission, route, GateQuery(claim=claim, slot=slot))
                answer = dataclasses.replace(again, outcome=answer.outcome)
        return slot, answer

    def slot(self, route: Route, user_id: int, role: str | None, facts: Facts) -> CacheSlot | None:
        """Where a read of a cached route is cached for this caller (None: not cached)."""
        kind = route.policy.cache
        if kind is None or role is None or facts.method not in READS:
            return None
        viewer = Viewer(user_id, role)
        return self.parts.cache.slot(kind, viewer, facts.task_id, facts.origin, facts.query)

    @staticmethod
    def cached_answer(
        admission: Admission, slot: CacheSlot | None, answer: GateAnswer
    ) -> Entry | None:
        """Record the cache lookup on the admission; the cached answer to serve, if any."""
        if slot is None:
            return None
        admission.slot, admission.lookup = slot, answer.lookup
        entry = answer.lookup.entry if answer.lookup is not None else None
        admission.hit = entry is not None
        metrics.cache_looked_up(admission.policy.cache or "", admission.hit)
        return entry

    async def _limit_by(self, admission: Admission, route: Route, scope: str) -> None:
        """The route's limits on `scope` alone (no token, or one that failed)."""
        if route.limits:
            keys = limit_keys(scope, route.endpoint, route.limits)
            await self.ask(admission, route, GateQuery(limits=route.limits, keys=keys))

    async def ask(self, admission: Admission, route: Route, query: GateQuery) -> GateAnswer:
        """One call to the shared stores; 429 when a limit refuses. When the stores cannot
        answer, the rate limit's policy (fail open, or 503), and a token's revocation is left
        to the record (`UNREACHABLE`)."""
        try:
            answer = await self.parts.gatekeeper.admit(query)
        except StoreUnavailable:
            if query.limits and not self.settings.ratelimit_fail_open:
                raise APIError(503, "Rate limiting is unavailable. Try again shortly.") from None
            if query.jti is not None:
                self.parts.revocation_record.copy_failed()
            if query.claim is not None:  # it cannot run without its key claimed
                message = "Idempotency keys are unavailable. Try again shortly."
                raise APIError(503, message) from None
            return NOTHING_KNOWN if query.jti is None else UNREACHABLE
        if answer.outcome is not None:
            decision = admission.rate = decide(route.limits, answer.outcome)
            if not decision.allowed:
                metrics.rate_limited("request")
                raise APIError(
                    429,
                    "Too many requests. Try again later.",
                    code="rate_limited",
                    headers={"Retry-After": str(decision.retry_after)},
                )
        return answer

    async def finish(self, response: Response) -> Response:
        """The one after-request step: the answer kept for the retries of an idempotency key
        (or the key freed); rate-limit headers; a cached route's X-Cache, and its fresh 200
        answer stored; a read's 200 made 304 by its If-None-Match; the request id and
        security headers."""
        if request.method == "OPTIONS":
            options_as_204(response)
        admission: Admission | None = g.get("admission")
        if admission is not None:
            if admission.claim is not None:
                await self._settle(admission.claim, response)
            await self._add_rate_and_cache(admission, response)
        if (
            response.status_code == 200
            and request.method in READS
            and read_not_modified(response.headers.get("ETag"))
        ):
            as_not_modified(response)
        echo_request_id(response)
        add_security_headers(response)
        return response

    async def _settle(self, claim: IdempotencyClaim, response: Response) -> None:
        """Keep the answer for the key's retries, or free the key when the request failed."""
        store = self.parts.idempotency
        try:
            if kept(response.status_code):
                entry = await _entry_of(response)
                await store.complete(claim, entry, self.settings.idempotency_ttl_seconds)
            else:
                await store.release(claim)
        except StoreUnavailable:
            return  # the claim lapses after its in-flight time: then a retry runs again

    async def _add_rate_and_cache(self, admission: Admission, response: Response) -> None:
        """The rate-limit headers; on a cached route, X-Cache and the fresh answer stored."""
        if admission.rate is not None:
            response.headers.update(rate_headers(admission.rate))
        slot = admission.slot
        if slot is None or admission.hit:
            return
        response.headers["X-Cache"] = "MISS"
        lookup = admission.lookup
        if lookup is not None and response.status_code == 200:
            entry = await _entry_of(response)
            try:
                await self.parts.answers.put(lookup.key, entry, slot.ttl)
            except StoreUnavailable:
                return


async def _entry_of(response: Response) -> Entry:
    """A response as it is kept (a cached answer, an idempotent request's answer): its status,
    body and headers but the per-request ones."""
    headers = {k: v for k, v in response.headers.items() if k.lower() not in UNCACHED_HEADERS}
    return Entry(response.status_code, headers, await response.get_data(as_text=False))

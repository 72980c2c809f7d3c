"""The edge: a cached read whose caller this process already knows (its token verified before,
its role remembered) is taken before the framework, and a hit is answered from there.

It runs the gate's own step (`Gate.step`: revocation, the rate limit, the cache lookup) on the
request's ASGI scope, so a hit costs the stores' one round trip and little else. Everything
else goes on to Quart untouched; a read the edge took but did not answer (a miss, a refusal)
goes on with what the edge found (`EdgeAdmission`), and the gate carries on from it, so no
request is counted twice. The routes it takes are the cached GET routes of the app's URL map.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import MutableMapping, Sequence
from typing import Any, cast

from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGISendCallable,
    HTTPScope,
    Scope,
)
from quart import Quart
from werkzeug.routing import BaseConverter, Rule, ValidationError
from werkzeug.sansio.utils import get_host

from taskapi.domain.limits import address_key
from taskapi.domain.viewer import Viewer
from taskapi.errors import APIError
from taskapi.http.conditional import if_none_match_hits, not_modified_headers
from taskapi.http.gate import (
    EDGE_ADMISSION,
    Admission,
    EdgeAdmission,
    Facts,
    Gate,
    Route,
)
from taskapi.http.metrics import note_route
from taskapi.http.policy import policy_of
from taskapi.http.proxies import TRUSTED_PEER
from taskapi.http.ratelimit_headers import rate_headers
from taskapi.http.request_ids import request_id_for
from taskapi.http.security_headers import CREDENTIALED, SECURITY_HEADERS
from taskapi.http.tokens import TokenClaims, VerifiedTokens, bearer_token
from taskapi.infra.logs import request_id_var
from taskapi.infra.stores import Entry

_VARIABLE = re.compile(r"<(?:[a-zA-Z_][a-zA-Z0-9_]*:)?([a-zA-Z_][a-zA-Z0-9_]*)>")
_WANTED = (b"authorization", b"host", b"x-request-id")
_IF_NONE_MATCH = b"if-none-match"  # every line of it, joined


@dataclasses.dataclass(frozen=True, slots=True)
class _CachedRoute:
    """A cached GET route: the pattern of its paths and the converters of its variables."""

    endpoint: str
    template: str  # the rule as written (the route label of its metrics)
    pattern: re.Pattern[str]
    converters: dict[str, BaseConverter]


def _cached_route(rule: Rule) -> _CachedRoute:
    """The path pattern of a rule, as Werkzeug matches it: each variable by its converter's
    regex; a rule ending in `/` without strict slashes also without that slash."""
    converters: dict[str, BaseConverter] = rule._converters
    pieces, position = [], 0
    for variable in _VARIABLE.finditer(rule.rule):
        pieces.append(re.escape(rule.rule[position : variable.start()]))
        name = variable.group(1)
        pieces.append(f"(?P<{name}>{converters[name].regex})")
        position = variable.end()
    tail = rule.rule[position:]
    if tail.endswith("/") and not rule.strict_slashes:
        pieces.append(re.escape(tail[:-1]) + "/?")
    else:
        pieces.append(re.escape(tail))
    assert rule.endpoint is not None
    return _CachedRoute(rule.endpoint, rule.rule, re.compile("".join(pieces)), converters)


class CachedReads:
    """ASGI middleware in front of the Quart app (`app.asgi_app`)."""

    def __init__(
        self, inner: ASGIFramework, app: Quart, gate: Gate, verified: VerifiedTokens
    ) -> None:
        self.inner = inner
        self.app = app
        self.gate = gate
        self.verified = verified
        self._routes: Sequence[_CachedRoute] | None = None
        self._templates: dict[str, str] = {}  # endpoint → its rule as written

    def routes(self) -> Sequence[_CachedRoute]:
        """The app's cached GET routes that need an access token (read once, after the app
        has all its routes)."""
        if self._routes is None:
            found = []
            for rule in self.app.url_map.iter_rules():
                view = self.app.view_functions.get(rule.endpoint)
                if view is None or "GET" not in (rule.methods or ()):
                    continue
                policy = policy_of(view)
                if policy.cache is not None and policy.auth is not None:
                    found.append(_cached_route(rule))
            self._routes = tuple(found)
            self._templates = {route.endpoint: route.template for route in found}
        return self._routes

    def match(self, path: str) -> tuple[str, dict[str, Any]] | None:
        """The cached route a path is for, and its values; None: not one (or not valid)."""
        for route in self.routes():
            matched = route.pattern.fullmatch(path)
            if matched is None:
                continue
            values = {}
            try:
                for name, text in matched.groupdict().items():
                    values[name] = route.converters[name].to_python(text)
                self._preprocess(route.endpoint, values)
            except (ValidationError, APIError):
                return None  # the framework answers it as it does
            return route.endpoint, values
        return None

    def _preprocess(self, endpoint: str, values: dict[str, Any]) -> None:
        """The app's URL value preprocessors (e.g. the 404 of a too-large id)."""
        blueprint = endpoint.rpartition(".")[0]
        for name in (None, blueprint) if blueprint else (None,):
            for preprocess in self.app.url_value_preprocessors.get(name, ()):
                preprocess(endpoint, values)

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        taken = self._take(scope) if scope["type"] == "http" else None
        if taken is None:
            await self.inner(scope, receive, send)
            return
        scope = cast(HTTPScope, scope)
        route, facts, headers, claims, role = taken
        request_id = request_id_for(
            headers.get(b"x-request-id", b"").decode("latin-1"), bool(scope.get(TRUSTED_PEER))
        )
        request_id_var.set(request_id)
        client = scope.get("client")
        peer = client[0] if client else "<local>"
        address = address_key(peer, self.gate.settings.ratelimit_ipv6_prefix)
        admission = Admission(route.policy, address, claims=claims)
        try:
            slot, answer = await self.gate.step(admission, route, claims, role, facts)
        except APIError as error:
            await self.inner(
                _handing(scope, EdgeAdmission(request_id, admission, error)), receive, send
            )
            return
        admission.viewer = Viewer(claims.user_id, role)
        entry = Gate.cached_answer(admission, slot, answer)
        if entry is None:
            await self.inner(_handing(scope, EdgeAdmission(request_id, admission)), receive, send)
            return
        conditional = headers.get(_IF_NONE_MATCH)
        not_modified = conditional is not None and if_none_match_hits(
            conditional.decode("latin-1"), entry.headers.get("ETag")
        )
        await _send_hit(send, entry, admission, request_id, not_modified=not_modified)

    def _take(
        self, scope: HTTPScope
    ) -> tuple[Route, Facts, dict[bytes, bytes], TokenClaims, str] | None:
        """A cached read the edge can decide (None: leave it to the framework)."""
        if scope["method"] != "GET" or scope.get("root_path"):
            return None
        if scope.get("http_version", "1.1") < "1.1":
            return None
        matched = self.match(scope["path"])
        if matched is None:
            return None
        endpoint, values = matched
        note_route(scope, self._templates[endpoint])
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            lowered = name.lower()
            if lowered in _WANTED and lowered not in headers:
                headers[lowered] = value
            elif lowered == _IF_NONE_MATCH:
                known = headers.get(lowered)
                headers[lowered] = value if known is None else known + b", " + value
        authorization = headers.get(b"authorization")
        if authorization is None:
            return None
        try:
            token = bearer_token(authorization.decode("latin-1"))
        except APIError:
            return None
        claims = self.verified.get(token)
        route = self.gate.route(endpoint)
        if claims is None or claims.kind != route.policy.auth:
            return None
        role = self.gate.parts.roles.cached_role(claims.user_id, claims.generation)
        if role is None:
            return None
        host = headers.get(b"host")
        origin_host = get_host(
            scope["scheme"], host.decode("latin-1") if host else None, scope.get("server")
        )
        facts = Facts(
            "GET",
            f"{scope['scheme']}://{origin_host}",
            scope["query_string"].decode("latin-1"),
            values.get("task_id"),
        )
        return route, facts, headers, claims, role


def _handing(scope: HTTPScope, handed: EdgeAdmission) -> HTTPScope:
    """A copy of the scope that carries what the edge found on to the gate."""
    carried = scope.copy()
    # ASGI lets middleware add keys of its own; hypercorn's scope types declare none
    cast(MutableMapping[str, object], carried)[EDGE_ADMISSION] = handed
    return carried


async def _send_hit(
    send: ASGISendCallable,
    entry: Entry,
    admission: Admission,
    request_id: str,
    *,
    not_modified: bool,
) -> None:
    """The cached answer (or, `not_modified`, the 304 standing for it) with the headers the
    after-request step gives one: X-Cache, the rate-limit figures, the request id, the
    security headers and `no-store`."""
    status, body = (304, b"") if not_modified else (entry.status, entry.body)
    kept = not_modified_headers(entry.headers) if not_modified else entry.headers
    headers = {name.lower(): (name, value) for name, value in kept.items()}
    if not not_modified:
        headers["content-length"] = ("Content-Length", str(len(body)))
    headers["x-cache"] = ("X-Cache", "HIT")
    if admission.rate is not None:
        for name, value in rate_headers(admission.rate).items():
            headers[name.lower()] = (name, value)
    headers["x-request-id"] = ("X-Request-ID", request_id)
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name.lower(), (name, value))
    headers[CREDENTIALED[0].lower()] = CREDENTIALED
    raw = [(key.encode(), value.encode()) for key, (_name, value) in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw, "trailers": False})
    await send({"type": "http.response.body", "body": body, "more_body": False})

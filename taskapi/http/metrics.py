"""`GET /metrics` and the per-request metrics, as the outermost ASGI middleware (so the edge's
cached answers are counted too, and the peer is the socket's, before any forwarded header).

A request is counted by its route template: a before-request step of the app's, ahead of the
gate's (`note_quart_route`), or the edge (`note_route`) writes it into the request's
`RouteNote`; a request neither wrote one for matched no route (`UNMATCHED`). A request whose
client left before any answer began is counted as 499, as nginx logs it, not as a 500.
`/metrics` itself is answered here to the peers of `TASKAPI_METRICS_ALLOW` and goes on to the
app, which answers 404, for anyone else; it is not one of the app's routes, so neither the
OpenAPI document nor nginx's site serves it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import cast

from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    HTTPScope,
    Scope,
)
from quart import Quart, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RoutingException

from taskapi.infra import metrics
from taskapi.settings import Network

PATH = "/metrics"
ROUTE_NOTE = "taskapi.route_note"  # the scope key of a request's RouteNote
# the status counted for a request cancelled before its answer began, as nginx logs it: the
# client closed its connection while waiting (not an error of the server's)
CLIENT_CLOSED = 499


class RouteNote:
    """Where a request's route template is written once it is known."""

    __slots__ = ("template",)

    def __init__(self) -> None:
        self.template = metrics.UNMATCHED


def note_route(scope: Scope, template: str) -> None:
    """The route template of the request of this scope (when its metrics are kept)."""
    note = cast("RouteNote | None", cast(MutableMapping[str, object], scope).get(ROUTE_NOTE))
    if note is not None:
        note.template = template


def route_noter(app: Quart) -> Callable[[Scope], None]:
    """`note(scope)`: the template of the app's route that the request's method and path match,
    for a request that never reaches the app (it left while waiting to be let in)."""

    def note(scope: Scope) -> None:
        if scope["type"] != "http":
            return
        try:
            rule, _values = app.url_map.bind("localhost").match(
                scope["path"], scope["method"], return_rule=True
            )
        except (HTTPException, RoutingException):
            return  # no route (or a redirect): counted as unmatched
        note_route(scope, rule.rule)

    return note


async def note_quart_route() -> None:
    """Before-request step (ahead of the gate's): the template of the rule the request matched,
    written before anything can stop the request (a refusal, the client leaving)."""
    rule = request.url_rule
    if rule is not None:
        note_route(cast(Scope, request.scope), rule.rule)


class RequestMetrics:
    """ASGI middleware: counts and times every HTTP request, and answers `GET /metrics`."""

    def __init__(
        self,
        app: ASGIFramework,
        allow: Sequence[Network],
        before_scrape: Callable[[], Awaitable[None]],
    ) -> None:
        self.app = app
        self.allow = tuple(allow)
        self.before_scrape = before_scrape

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == PATH and scope["method"] in ("GET", "HEAD") and self._allowed(scope):
            await self._scrape(scope, send)
            return
        started = time.perf_counter()
        note = RouteNote()
        noted = scope.copy()
        cast(MutableMapping[str, object], noted)[ROUTE_NOTE] = note
        status = 500  # what the server answers when the app fails before its answer starts
        began = left = False  # an answer began; the client closed its connection before that

        async def receiving() -> ASGIReceiveEvent:
            nonlocal left
            message = await receive()
            if message["type"] == "http.disconnect" and not began:
                left = True
            return message

        async def sending(message: ASGISendEvent) -> None:
            nonlocal status, began
            if message["type"] == "http.response.start":
                status, began = message["status"], True
            await send(message)

        try:
            await self.app(noted, receiving, sending)
        finally:
            if left and status == 500 and not began:  # not the server's failure
                status = CLIENT_CLOSED
            elapsed = time.perf_counter() - started
            metrics.request_answered(note.template, scope["method"], status, elapsed)

    def _allowed(self, scope: HTTPScope) -> bool:
        client = scope.get("client")
        return metrics.allowed(client[0] if client else None, self.allow)

    async def _scrape(self, scope: HTTPScope, send: ASGISendCallable) -> None:
        await self.before_scrape()
        body = metrics.exposition()
        headers = [
            (b"content-type", metrics.CONTENT_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send(
            {"type": "http.response.start", "status": 200, "headers": headers, "trailers": False}
        )
        payload = b"" if scope["method"] == "HEAD" else body
        await send({"type": "http.response.body", "body": payload, "more_body": False})

"""How many requests one process works on at once (TASKAPI_MAX_REQUESTS_IN_FLIGHT), as ASGI
middleware in front of the app: the rest wait their turn, in the order they arrived.

With thousands of connections each holding a request, a process that starts on all of them at
once interleaves them all: each request's state goes cold between its steps while thousands of
others run, every one of them is slower, and whichever the loop happens to resume first is
answered first. Working on a bounded number at a time, in arrival order, keeps the others
waiting cheaply before the app has built anything for them.

A request holds its place from when it is let in until its answer starts (sending the answer to
a slow reader does not hold it). A request with a body is let in at once: reading the body
arrives as fast as its client sends it, and a slow sender would hold the place meanwhile."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    HTTPScope,
    Scope,
)


def has_body(scope: HTTPScope) -> bool:
    """Whether a body may follow: a Content-Length other than 0, chunked, or (HTTP/2 and 3,
    where a body needs neither header) any method but GET and HEAD."""
    if scope["http_version"] not in ("1.0", "1.1") and scope["method"] not in ("GET", "HEAD"):
        return True
    for name, value in scope["headers"]:
        lowered = name.lower()
        if lowered == b"content-length" and value.strip() != b"0":
            return True
        if lowered == b"transfer-encoding":
            return True
    return False


class InFlightLimit:
    """ASGI middleware: at most `limit` bodiless HTTP requests between being let in and the
    start of their answer; the others wait in arrival order."""

    def __init__(
        self, app: ASGIFramework, limit: int, on_left: Callable[[Scope], None] = lambda _: None
    ) -> None:
        """`on_left(scope)` is called for a request whose client left while it waited."""
        if limit < 1:
            raise ValueError("the limit is at least 1")
        self.app = app
        self.limit = limit
        self.on_left = on_left
        self._free = limit
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        """Requests waiting for a place now."""
        return sum(1 for turn in self._waiting if not turn.done())

    @property
    def working(self) -> int:
        """Requests holding a place now."""
        return self.limit - self._free

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http" or has_body(scope):
            await self.app(scope, receive, send)
            return
        watching: asyncio.Future[ASGIReceiveEvent] | None = None
        holding = True
        if self._free > 0 and not self._waiting:
            self._free -= 1
        else:
            waited = await self._wait(receive)
            if waited is None:
                self.on_left(scope)  # the client left while waiting: nothing to answer
                return
            receive, watching = waited
            holding = watching is not None

        async def sending(message: ASGISendEvent) -> None:
            nonlocal holding
            if holding and message["type"] == "http.response.start":
                holding = False
                self._leave()
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if holding:
                self._leave()
            if watching is not None:
                watching.cancel()  # (no-op once it has the message)

    async def _wait(
        self, receive: ASGIReceiveCallable
    ) -> tuple[ASGIReceiveCallable, asyncio.Future[ASGIReceiveEvent] | None] | None:
        """Wait for a place, watching the connection: None when the client leaves first (the
        place, if it was already handed over, passes on). Else the app's `receive`, which
        replays what was read while waiting, and the watch on the connection (None: the request
        turned out to have a body, and is let in at once, holding no place)."""
        first = await receive()  # the request's end (it has no body): there already
        if first["type"] == "http.disconnect":
            return None
        if first["type"] == "http.request" and first.get("more_body"):
            return _replay(first, receive), None  # a body after all (an HTTP/2 GET may have one)
        watching: asyncio.Future[ASGIReceiveEvent] = asyncio.ensure_future(receive())
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await asyncio.wait((turn, watching), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            watching.cancel()
            self._give_up(turn)
            raise
        if not turn.done():  # the connection spoke first: the client left
            self._give_up(turn)
            return None
        return _replay(first, lambda: watching), watching

    def _give_up(self, turn: asyncio.Future[None]) -> None:
        if turn.done() and not turn.cancelled():
            self._leave()  # handed the place as it went away: pass it on
        else:
            turn.cancel()  # it stays in line; _leave skips it

    def _leave(self) -> None:
        """The place passes to the first still waiting, or is free again."""
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1


def _replay(first: ASGIReceiveEvent, then: Callable[[], Awaitable[ASGIReceiveEvent]]) -> Any:
    """A `receive` that returns `first`, then what `then()` gives (the message read while
    waiting, then the rest)."""
    read = [first]

    async def replaying() -> ASGIReceiveEvent:
        if read:
            return read.pop()
        return await then()

    return replaying

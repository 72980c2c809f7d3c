"""How many requests one process works on at once (TASKAPI_MAX_REQUESTS_IN_FLIGHT), as ASGI
middleware in front of the app: the rest wait their turn, in the order they arrived.

With thousands of connections each holding a request, a process that starts on all of them at
once interleaves them all, and each costs more and waits longer. Working on a bounded number at
a time, in arrival order, keeps the others waiting cheaply, before the app has built anything
for them.

A request holds its place from when it is let in until its answer starts (sending the answer to
a slow reader does not hold it). A request's body is read before it takes a place (a slow
sender holds none), up to `max_body` bytes; a body of unknown length (chunked, or an HTTP/2
request without Content-Length) or a larger one (the app answers 413) is let in at once, as is
one still arriving after `body_timeout` seconds (the app's own body timeout answers it). A
request whose client leaves while it waits is dropped from the line, never worked on."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable

from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    HTTPScope,
    Scope,
)


def body_length(scope: HTTPScope) -> int | None:
    """The length of the body the request says follows (0: none); None when it does not say
    (chunked; HTTP/2 and 3, where a body needs neither header, any method but GET and HEAD)."""
    plain = scope["http_version"] in ("1.0", "1.1") or scope["method"] in ("GET", "HEAD")
    length: int | None = 0 if plain else None
    for name, value in scope["headers"]:
        lowered = name.lower()
        if lowered == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return None
        elif lowered == b"transfer-encoding":
            return None
    return length


class InFlightLimit:
    """ASGI middleware: at most `limit` HTTP requests between being let in and the start of
    their answer; the others wait in arrival order."""

    def __init__(
        self,
        app: ASGIFramework,
        limit: int,
        on_left: Callable[[Scope], None] = lambda _: None,
        *,
        max_body: int,
        body_timeout: float,
    ) -> None:
        """`on_left(scope)` is called for a request whose client left before it was let in."""
        if limit < 1:
            raise ValueError("the limit is at least 1")
        self.app = app
        self.limit = limit
        self.on_left = on_left
        self.max_body = max_body
        self.body_timeout = body_timeout
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
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = body_length(scope)
        if length is None or length > self.max_body:
            await self.app(scope, receive, send)  # let in at once, holding no place
            return
        read: list[ASGIReceiveEvent] = []
        if length:
            whole = await self._read_body(receive, read)
            if whole is None:
                self.on_left(scope)
                return
            if not whole:  # still arriving: let in at once, holding no place
                await self.app(scope, _replay(read, receive), send)
                return
        watching: asyncio.Future[ASGIReceiveEvent] | None = None
        if self._free > 0 and not self._waiting:
            self._free -= 1
            if read:
                receive = _replay(read, receive)
        else:
            waited = await self._wait(receive, read)
            if waited is None:
                self.on_left(scope)  # the client left while waiting: nothing to answer
                return
            receive, watching = waited
            if watching is None:  # a body after all (an HTTP/2 GET may have one): let in
                await self.app(scope, receive, send)
                return
        holding = True

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

    async def _read_body(
        self, receive: ASGIReceiveCallable, read: list[ASGIReceiveEvent]
    ) -> bool | None:
        """Read the body's messages into `read`: True when it is all there, False when it is
        still arriving after body_timeout, None when the client left."""
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    read.append(message)
                    if message["type"] != "http.request" or not message.get("more_body"):
                        return True
        except TimeoutError:
            return False

    async def _wait(
        self, receive: ASGIReceiveCallable, read: list[ASGIReceiveEvent]
    ) -> tuple[ASGIReceiveCallable, asyncio.Future[ASGIReceiveEvent] | None] | None:
        """Wait for a place, watching the connection: None when the client leaves first (the
        place, if it was already handed over, passes on). Else the app's `receive`, which
        replays the request's messages read so far, and the watch on the connection (None: a
        body is arriving after all; it waited for no place, and holds none)."""
        if not read:
            first = await receive()  # the request's end (it has no body): there already
            if first["type"] == "http.disconnect":
                return None
            read.append(first)
            if first["type"] == "http.request" and first.get("more_body"):
                return _replay(read, receive), None
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
        return _replay(read, lambda: watching), watching

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


def _replay(
    read: list[ASGIReceiveEvent], then: Callable[[], Awaitable[ASGIReceiveEvent]]
) -> ASGIReceiveCallable:
    """A `receive` that returns the messages in `read`, in order, then what `then()` gives."""
    pending = collections.deque(read)

    async def replaying() -> ASGIReceiveEvent:
        if pending:
            return pending.popleft()
        return await then()

    return replaying

"""TASKAPI_MAX_REQUESTS_IN_FLIGHT (http/admission.py): at most that many requests of a process
between being let in and the start of their answer, the rest let in in arrival order; a body is
read before its request takes a place; a request that goes away before it is let in takes none."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from taskapi.http.admission import InFlightLimit, body_length
from taskapi.http.metrics import ROUTE_NOTE, RouteNote, route_noter
from taskapi.infra.metrics import UNMATCHED
from tests.asgi import asgi_request, http_scope
from tests.conftest import create_account
from tests.http.test_metrics import samples, value
from tests.services import until, within_turns

MAX_BODY = 100
BODY_TIMEOUT = 0.5  # seconds: only the slow sender's test waits it out


def limited(app: Any, limit: int, **options: Any) -> InFlightLimit:
    return InFlightLimit(app, limit, max_body=MAX_BODY, body_timeout=BODY_TIMEOUT, **options)


class HeldApp:
    """An ASGI app that records the order requests reach it and answers each one only when
    the test releases it (`answer(path)`), sending its body when `finish(path)` is called."""

    def __init__(self) -> None:
        self.reached: list[str] = []
        self.bodies: dict[str, bytes] = {}
        self.answer_of: dict[str, asyncio.Event] = {}
        self.finish_of: dict[str, asyncio.Event] = {}

    def events(self, path: str) -> tuple[asyncio.Event, asyncio.Event]:
        return (
            self.answer_of.setdefault(path, asyncio.Event()),
            self.finish_of.setdefault(path, asyncio.Event()),
        )

    def answer(self, path: str) -> None:
        self.events(path)[0].set()

    def finish(self, path: str) -> None:
        self.events(path)[1].set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.reached.append(scope["path"])
        if any(name == b"content-length" for name, _ in scope["headers"]):
            body, more = b"", True
            while more:
                message = await receive()
                body, more = body + message.get("body", b""), message.get("more_body", False)
            self.bodies[scope["path"]] = body
        answer, finish = self.events(scope["path"])
        await answer.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await finish.wait()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class Connection:
    """One client connection as hypercorn hands it to the app: the request's end, then,
    once the client leaves (`leave()`), a disconnect."""

    def __init__(self) -> None:
        self.sent_request = False
        self.left = asyncio.Event()

    def leave(self) -> None:
        self.left.set()

    async def receive(self) -> dict[str, Any]:
        if not self.sent_request:
            self.sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, _message: Any) -> None:
        pass


def call(
    limit: InFlightLimit,
    path: str,
    headers: dict[str, str] | None = None,
    connection: Connection | None = None,
) -> asyncio.Task:
    client = connection or Connection()
    scope = http_scope("GET", path, headers or {})
    return asyncio.create_task(limit(scope, client.receive, client.send))


async def test_requests_beyond_the_limit_wait_and_are_let_in_in_arrival_order():
    inner = HeldApp()
    limit = limited(inner, 2)
    paths = [f"/{n}" for n in range(6)]
    tasks = [call(limit, path) for path in paths]
    await within_turns(lambda: len(inner.reached) == 2)
    await within_turns(lambda: limit.waiting == 4)
    assert inner.reached == ["/0", "/1"] and limit.working == 2
    for done in ("/1", "/0", "/2", "/3", "/4", "/5"):
        reached = len(inner.reached)
        inner.answer(done)
        inner.finish(done)
        if reached < len(paths):
            await within_turns(lambda reached=reached: len(inner.reached) == reached + 1)
    await asyncio.gather(*tasks)
    assert inner.reached == paths  # in arrival order, whichever finished first
    assert limit.working == 0 and limit.waiting == 0


async def test_the_place_is_freed_when_the_answer_starts_not_when_it_is_sent():
    """A slow reader of its answer does not hold a place."""
    inner = HeldApp()
    limit = limited(inner, 1)
    first, second = call(limit, "/slow-reader"), call(limit, "/next")
    await within_turns(lambda: limit.waiting == 1)
    inner.answer("/slow-reader")  # its answer starts; its body waits (finish not called)
    await within_turns(lambda: inner.reached == ["/slow-reader", "/next"])
    inner.answer("/next")
    inner.finish("/next")
    inner.finish("/slow-reader")
    await asyncio.gather(first, second)


class Uploading(Connection):
    """A connection whose request's body arrives in the chunks the test releases."""

    def __init__(self, chunks: list[bytes]) -> None:
        super().__init__()
        self.chunks = list(chunks)
        self.next_chunk = asyncio.Event()

    def send_chunk(self) -> None:
        self.next_chunk.set()

    async def receive(self) -> dict[str, Any]:
        if self.chunks:
            if not self.sent_request:
                self.sent_request = True  # the first chunk is there with the headers
            else:
                left = asyncio.create_task(self.left.wait())
                chunk = asyncio.create_task(self.next_chunk.wait())
                await asyncio.wait((left, chunk), return_when=asyncio.FIRST_COMPLETED)
                left.cancel()
                chunk.cancel()
                if self.left.is_set():
                    return {"type": "http.disconnect"}
                self.next_chunk.clear()
            body = self.chunks.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(self.chunks)}
        await self.left.wait()
        return {"type": "http.disconnect"}


def upload(limit: InFlightLimit, path: str, client: Connection, size: int) -> asyncio.Task:
    scope = http_scope("POST", path, {"Content-Length": str(size)})
    return asyncio.create_task(limit(scope, client.receive, client.send))


async def test_a_request_with_a_body_waits_its_turn_once_the_body_is_there():
    """Its body is read while it holds no place; then it waits in line like any other, and the
    app gets the whole body."""
    inner = HeldApp()
    limit = limited(inner, 1)
    held = call(limit, "/held")
    await within_turns(lambda: limit.working == 1)
    sender = Uploading([b'{"title":', b' "t"}'])
    posted = upload(limit, "/posted", sender, 14)
    after = call(limit, "/after")
    # only /after: /posted is still sending its body
    await within_turns(lambda: limit.waiting == 1)
    sender.send_chunk()
    # its body is there: now it waits too, after /after
    await within_turns(lambda: limit.waiting == 2)
    for path in ("/held", "/after", "/posted"):
        inner.answer(path)
        inner.finish(path)
    await asyncio.gather(held, posted, after)
    assert inner.reached == ["/held", "/after", "/posted"]
    assert inner.bodies["/posted"] == b'{"title": "t"}'


async def test_a_body_still_arriving_after_the_body_timeout_is_let_in_at_once():
    """A slow sender holds no place while it sends, nor waits for ever: the app's own body
    timeout deals with it."""
    inner = HeldApp()
    limit = limited(inner, 1)
    held = call(limit, "/held")
    await within_turns(lambda: limit.working == 1)
    sender = Uploading([b"{", b"}"])
    slow = upload(limit, "/slow", sender, 2)
    await until(lambda: "/slow" in inner.reached, "the slow body's timeout", 10)
    assert limit.working == 1 and limit.waiting == 0
    sender.send_chunk()
    for path in ("/slow", "/held"):
        inner.answer(path)
        inner.finish(path)
    await asyncio.gather(held, slow)
    assert inner.bodies["/slow"] == b"{}"


async def test_a_client_leaving_while_sending_its_body_is_dropped():
    inner = HeldApp()
    left: list[str] = []
    limit = limited(inner, 1, on_left=lambda scope: left.append(scope["path"]))
    sender = Uploading([b"{", b"}"])
    gone = upload(limit, "/gone", sender, 2)
    await within_turns(lambda: sender.sent_request)
    sender.leave()
    await within_turns(gone.done)
    assert inner.reached == [] and left == ["/gone"] and limit.working == 0


async def test_a_body_of_unknown_or_too_large_a_length_is_let_in_at_once():
    """Chunked (no length to read up to), or larger than the app takes (it answers 413)."""
    inner = HeldApp()
    limit = limited(inner, 1)
    held = call(limit, "/held")
    await within_turns(lambda: limit.working == 1)
    chunked = call(limit, "/chunked", {"Transfer-Encoding": "chunked"})
    large = call(limit, "/large", {"Content-Length": str(MAX_BODY + 1)})
    await within_turns(lambda: len(inner.reached) == 3)
    assert inner.reached == ["/held", "/chunked", "/large"] and limit.waiting == 0
    for path in ("/chunked", "/large", "/held"):
        inner.answer(path)
        inner.finish(path)
    await asyncio.gather(held, chunked, large)


async def test_a_waiting_request_that_goes_away_takes_no_place():
    inner = HeldApp()
    limit = limited(inner, 1)
    held, gone, after = call(limit, "/held"), call(limit, "/gone"), call(limit, "/after")
    await within_turns(lambda: limit.waiting == 2)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert limit.waiting == 1
    inner.answer("/held")
    inner.finish("/held")
    await within_turns(lambda: inner.reached == ["/held", "/after"])
    inner.answer("/after")
    inner.finish("/after")
    await asyncio.gather(held, after)
    assert limit.working == 0


async def test_a_place_handed_to_a_request_as_it_goes_away_passes_to_the_next():
    inner = HeldApp()
    limit = limited(inner, 1)
    held, gone, after = call(limit, "/held"), call(limit, "/gone"), call(limit, "/after")
    await within_turns(lambda: limit.waiting == 2)
    inner.answer("/held")  # /held leaves: its place is handed to /gone...
    await within_turns(lambda: limit.waiting == 1)
    gone.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await gone
    await within_turns(lambda: inner.reached == ["/held", "/after"])
    for path in ("/held", "/after"):
        inner.answer(path)
        inner.finish(path)
    await asyncio.gather(held, after)
    assert limit.working == 0


async def test_a_request_whose_client_leaves_while_it_waits_is_dropped_from_the_line():
    """Clients that give up (and retry) leave no work behind: the app never sees it."""
    inner = HeldApp()
    left: list[str] = []
    limit = limited(inner, 1, on_left=lambda scope: left.append(scope["path"]))
    leaving = Connection()
    held, gone = call(limit, "/held"), call(limit, "/gone", connection=leaving)
    after = call(limit, "/after")
    await within_turns(lambda: limit.waiting == 2)
    leaving.leave()
    await within_turns(gone.done)  # it returns without an answer
    assert limit.waiting == 1
    for path in ("/held", "/after"):
        inner.answer(path)
        inner.finish(path)
    await asyncio.gather(held, after)
    assert inner.reached == ["/held", "/after"] and limit.working == 0
    assert left == ["/gone"]  # told, so that its metrics keep its route


async def test_a_request_that_left_while_waiting_is_counted_by_its_route(make_apps):
    (app,) = await make_apps(1)
    note = route_noter(app)
    for method, path, template in (
        ("GET", "/api/tasks/7", "/api/tasks/<task_id:task_id>"),
        ("GET", "/auth/me", "/auth/me"),
        ("GET", "/no/such/route", UNMATCHED),
        ("DELETE", "/auth/me", UNMATCHED),  # no such method
    ):
        scope = http_scope(method, path, {})
        scope[ROUTE_NOTE] = noted = RouteNote()
        note(scope)
        assert noted.template == template, (method, path)


async def test_the_app_reads_what_the_line_read_while_waiting():
    """The request's end, read while it waited, is handed to the app, then the client's
    leaving, as hypercorn would have."""
    read: list[str] = []

    async def reader(scope: Any, receive: Any, send: Any) -> None:
        read.append((await receive())["type"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        read.append((await receive())["type"])

    inner = HeldApp()
    limit = limited(inner, 1)
    held = call(limit, "/held")
    await within_turns(lambda: limit.working == 1)
    limit.app = reader  # the next one let in reads
    client = Connection()
    waiting = call(limit, "/reads", connection=client)
    await within_turns(lambda: limit.waiting == 1)
    inner.answer("/held")
    await within_turns(lambda: read == ["http.request"])
    client.leave()
    inner.finish("/held")
    await asyncio.gather(held, waiting)
    assert read == ["http.request", "http.disconnect"]


class SendingBody(Connection):
    """A connection whose request has a body though its headers do not say so (HTTP/2)."""

    async def receive(self) -> dict[str, Any]:
        if not self.sent_request:
            self.sent_request = True
            return {"type": "http.request", "body": b"{", "more_body": True}
        return {"type": "http.request", "body": b"}", "more_body": False}


async def test_a_waiting_request_that_turns_out_to_have_a_body_is_let_in_at_once():
    inner = HeldApp()
    limit = limited(inner, 1)
    held = call(limit, "/held")
    await within_turns(lambda: limit.working == 1)
    body = call(limit, "/body", connection=SendingBody())
    await within_turns(lambda: inner.reached == ["/held", "/body"])
    assert limit.working == 1 and limit.waiting == 0
    for path in ("/body", "/held"):
        inner.answer(path)
        inner.finish(path)
    await asyncio.gather(held, body)
    assert limit.working == 0


def test_the_length_a_request_says_its_body_has():
    """HTTP/2 and 3 carry a body without Content-Length or Transfer-Encoding."""
    assert body_length(http_scope("GET", "/", {})) == 0
    assert body_length(http_scope("DELETE", "/", {})) == 0  # HTTP/1.1 says when a body follows
    assert body_length(http_scope("POST", "/", {"Content-Length": "12"})) == 12
    assert body_length(http_scope("POST", "/", {"Transfer-Encoding": "chunked"})) is None
    assert body_length(http_scope("POST", "/", {"Content-Length": "twelve"})) is None
    for version in ("2", "3"):
        assert body_length({**http_scope("POST", "/", {}), "http_version": version}) is None
        assert body_length({**http_scope("DELETE", "/", {}), "http_version": version}) is None
        assert body_length({**http_scope("GET", "/", {}), "http_version": version}) == 0
        with_length = {**http_scope("PATCH", "/", {"Content-Length": "3"}), "http_version": version}
        assert body_length(with_length) == 3


def test_the_limit_is_at_least_one():
    with pytest.raises(ValueError):
        limited(HeldApp(), 0)


async def test_the_app_answers_many_concurrent_reads_through_a_limit_of_one(make_apps):
    """The app as built: every request answered, none lost in line, and /metrics (outside the
    limit) shows the places and the line."""
    (app,) = await make_apps(1, max_requests_in_flight=1)
    account = await create_account(app)
    created = await app.test_client().post(
        "/api/tasks/", headers=account.headers, json={"title": "t"}
    )
    url = f"/api/tasks/{(await created.get_json())['data']['id']}"
    answers = await asyncio.gather(
        *(asgi_request(app, "GET", url, account.headers) for _ in range(30)),
        *(asgi_request(app, "GET", "/api/tasks/", account.headers) for _ in range(30)),
    )
    assert [a.status for a in answers] == [200] * 60
    found = await samples(app)
    assert value(found, "taskapi_http_requests_in_flight") == 0
    assert value(found, "taskapi_http_requests_waiting") == 0


async def test_without_a_limit_the_app_lets_every_request_in(make_apps):
    (app,) = await make_apps(1, max_requests_in_flight=0)
    assert not any(isinstance(layer, InFlightLimit) for layer in _layers(app.asgi_app)), (
        "TASKAPI_MAX_REQUESTS_IN_FLIGHT=0 builds no limit"
    )
    (limited,) = await make_apps(1, max_requests_in_flight=5)
    assert [
        layer.limit for layer in _layers(limited.asgi_app) if isinstance(layer, InFlightLimit)
    ] == [5]


def _layers(asgi: Any) -> list[Any]:
    found = []
    while asgi is not None:
        found.append(asgi)
        asgi = getattr(asgi, "app", None) if not hasattr(asgi, "view_functions") else None
    return found

"""TASKAPI_MAX_REQUESTS_IN_FLIGHT (http/admission.py): at most that many bodiless requests of a
process between being let in and the start of their answer, the rest let in in arrival order;
a request with a body never waits; a waiting request that goes away takes no place."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from taskapi.http.admission import InFlightLimit, has_body
from taskapi.http.metrics import ROUTE_NOTE, RouteNote, route_noter
from taskapi.infra.metrics import UNMATCHED
from tests.asgi import asgi_request, http_scope
from tests.conftest import create_account
from tests.http.test_metrics import samples, value


class HeldApp:
    """An ASGI app that records the order requests reach it and answers each one only when
    the test releases it (`answer(path)`), sending its body when `finish(path)` is called."""

    def __init__(self) -> None:
        self.reached: list[str] = []
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


async def until(check) -> None:
    """Let the other tasks run until `check()` holds (a bounded number of loop turns)."""
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError("never happened")


async def test_requests_beyond_the_limit_wait_and_are_let_in_in_arrival_order():
    inner = HeldApp()
    limit = InFlightLimit(inner, 2)
    paths = [f"/{n}" for n in range(6)]
    tasks = [call(limit, path) for path in paths]
    await until(lambda: len(inner.reached) == 2)
    await until(lambda: limit.waiting == 4)
    assert inner.reached == ["/0", "/1"] and limit.working == 2
    for done in ("/1", "/0", "/2", "/3", "/4", "/5"):
        reached = len(inner.reached)
        inner.answer(done)
        inner.finish(done)
        if reached < len(paths):
            await until(lambda reached=reached: len(inner.reached) == reached + 1)
    await asyncio.gather(*tasks)
    assert inner.reached == paths  # in arrival order, whichever finished first
    assert limit.working == 0 and limit.waiting == 0


async def test_the_place_is_freed_when_the_answer_starts_not_when_it_is_sent():
    """A slow reader of its answer does not hold a place."""
    inner = HeldApp()
    limit = InFlightLimit(inner, 1)
    first, second = call(limit, "/slow-reader"), call(limit, "/next")
    await until(lambda: limit.waiting == 1)
    inner.answer("/slow-reader")  # its answer starts; its body waits (finish not called)
    await until(lambda: inner.reached == ["/slow-reader", "/next"])
    inner.answer("/next")
    inner.finish("/next")
    inner.finish("/slow-reader")
    await asyncio.gather(first, second)


async def test_a_request_with_a_body_is_let_in_at_once():
    """Its body arrives as fast as its client sends it: waiting would hold a place meanwhile."""
    inner = HeldApp()
    limit = InFlightLimit(inner, 1)
    held = call(limit, "/held")
    await until(lambda: limit.working == 1)
    posts = [
        call(limit, "/with-length", {"Content-Length": "12"}),
        call(limit, "/chunked", {"Transfer-Encoding": "chunked"}),
    ]
    bodiless = call(limit, "/bodiless", {"Content-Length": "0"})
    await until(lambda: len(inner.reached) == 3)
    assert inner.reached == ["/held", "/with-length", "/chunked"] and limit.waiting == 1
    for path in ("/with-length", "/chunked", "/held", "/bodiless"):
        inner.answer(path)
        inner.finish(path)
    await asyncio.gather(held, bodiless, *posts)
    assert inner.reached[-1] == "/bodiless"


async def test_a_waiting_request_that_goes_away_takes_no_place():
    inner = HeldApp()
    limit = InFlightLimit(inner, 1)
    held, gone, after = call(limit, "/held"), call(limit, "/gone"), call(limit, "/after")
    await until(lambda: limit.waiting == 2)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert limit.waiting == 1
    inner.answer("/held")
    inner.finish("/held")
    await until(lambda: inner.reached == ["/held", "/after"])
    inner.answer("/after")
    inner.finish("/after")
    await asyncio.gather(held, after)
    assert limit.working == 0


async def test_a_place_handed_to_a_request_as_it_goes_away_passes_to_the_next():
    inner = HeldApp()
    limit = InFlightLimit(inner, 1)
    held, gone, after = call(limit, "/held"), call(limit, "/gone"), call(limit, "/after")
    await until(lambda: limit.waiting == 2)
    inner.answer("/held")  # /held leaves: its place is handed to /gone...
    await until(lambda: limit.waiting == 1)
    gone.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await gone
    await until(lambda: inner.reached == ["/held", "/after"])
    for path in ("/held", "/after"):
        inner.answer(path)
        inner.finish(path)
    await asyncio.gather(held, after)
    assert limit.working == 0


async def test_a_request_whose_client_leaves_while_it_waits_is_dropped_from_the_line():
    """Clients that give up (and retry) leave no work behind: the app never sees it."""
    inner = HeldApp()
    left: list[str] = []
    limit = InFlightLimit(inner, 1, on_left=lambda scope: left.append(scope["path"]))
    leaving = Connection()
    held, gone = call(limit, "/held"), call(limit, "/gone", connection=leaving)
    after = call(limit, "/after")
    await until(lambda: limit.waiting == 2)
    leaving.leave()
    await until(gone.done)  # it returns without an answer
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
    limit = InFlightLimit(inner, 1)
    held = call(limit, "/held")
    await until(lambda: limit.working == 1)
    limit.app = reader  # the next one let in reads
    client = Connection()
    waiting = call(limit, "/reads", connection=client)
    await until(lambda: limit.waiting == 1)
    inner.answer("/held")
    await until(lambda: read == ["http.request"])
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
    limit = InFlightLimit(inner, 1)
    held = call(limit, "/held")
    await until(lambda: limit.working == 1)
    body = call(limit, "/body", connection=SendingBody())
    await until(lambda: inner.reached == ["/held", "/body"])
    assert limit.working == 1 and limit.waiting == 0
    for path in ("/body", "/held"):
        inner.answer(path)
        inner.finish(path)
    await asyncio.gather(held, body)
    assert limit.working == 0


def test_over_http2_only_a_get_or_head_without_a_length_counts_as_bodiless():
    """HTTP/2 and 3 carry a body without Content-Length or Transfer-Encoding."""
    for version in ("2", "3"):
        assert has_body({**http_scope("POST", "/", {}), "http_version": version})
        assert has_body({**http_scope("DELETE", "/", {}), "http_version": version})
        assert not has_body({**http_scope("GET", "/", {}), "http_version": version})
    assert not has_body(http_scope("DELETE", "/", {}))  # HTTP/1.1 says when a body follows
    assert has_body(http_scope("DELETE", "/", {"Content-Length": "2"}))


def test_the_limit_is_at_least_one():
    with pytest.raises(ValueError):
        InFlightLimit(HeldApp(), 0)


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

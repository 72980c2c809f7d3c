"""Proxy trust: forwarded headers count only when the TCP peer is in TASKAPI_TRUSTED_PROXIES.

`ForwardedHeaders` wraps the ASGI app. For a request from a trusted proxy it takes the client
address from X-Forwarded-For (the first hop from the right that is not itself a trusted proxy:
entries further left are the client's own words), the scheme from X-Forwarded-Proto and the host
from X-Forwarded-Host, and marks the request so that its X-Request-ID is believed too. From any
other peer those headers change nothing. No quart here: plain values and the ASGI scope (as
hypercorn's types describe it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Protocol, cast

from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope, WWWScope

from taskapi.settings import Network

TRUSTED_PEER = "taskapi.trusted_peer"  # scope key: the request came through a trusted proxy
_SCHEMES = {"http": {"http", "https"}, "websocket": {"ws", "wss"}}
_WEBSOCKET_SCHEME = {"http": "ws", "https": "wss"}


def is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    """Whether an address (a peer, or a hop of X-Forwarded-For) is one of the trusted proxies."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def forwarded_client(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client behind a trusted peer: the right-most X-Forwarded-For hop that is not a
    trusted proxy (the left-most hop when all are trusted; the peer when there are none)."""
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    hops = [hop for hop in hops if hop]
    for hop in reversed(hops):
        if not is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


class ForwardedHeaders:
    """ASGI middleware applying X-Forwarded-For/-Proto/-Host, for trusted peers only."""

    def __init__(self, app: ASGIFramework, trusted: Sequence[Network]) -> None:
        self.app = app
        self.trusted = tuple(trusted)

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "lifespan":
            client = scope.get("client")
            if client and is_trusted(client[0], self.trusted):
                scope = self._forwarded(scope, client[0])
        await self.app(scope, receive, send)

    def _forwarded(self, scope: WWWScope, peer: str) -> WWWScope:
        """A copy of the scope as the client sent it to the proxy (the server's stays intact)."""
        values: dict[bytes, list[str]] = {}
        for name, value in scope["headers"]:
            lowered = name.lower()
            if lowered in (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"):
                values.setdefault(lowered, []).append(value.decode("latin-1"))
        forwarded = scope.copy()
        # ASGI lets middleware add keys of its own; hypercorn's scope types declare none
        cast(MutableMapping[str, object], forwarded)[TRUSTED_PEER] = True
        if b"x-forwarded-for" in values:
            client = forwarded_client(peer, values[b"x-forwarded-for"], self.trusted)
            forwarded["client"] = (client, 0)
        proto = _last_hop(values.get(b"x-forwarded-proto"))
        if proto is not None:
            proto = proto.lower()
            if forwarded["type"] == "websocket":
                proto = _WEBSOCKET_SCHEME.get(proto, proto)
            if proto in _SCHEMES[forwarded["type"]]:
                forwarded["scheme"] = proto
        host = _last_hop(values.get(b"x-forwarded-host"))
        if host:
            headers = [(n, v) for n, v in forwarded["headers"] if n.lower() != b"host"]
            forwarded["headers"] = [*headers, (b"host", host.encode("latin-1"))]
        return forwarded


def _last_hop(values: list[str] | None) -> str | None:
    """The value the nearest proxy wrote: the right-most of a comma-separated header."""
    if not values:
        return None
    return ",".join(values).rsplit(",", 1)[-1].strip() or None


class _Request(Protocol):
    @property
    def remote_addr(self) -> str | None: ...

    @property
    def scope(self) -> Mapping[str, object]: ...


def client_ip(request: _Request) -> str:
    """The client's address: the TCP peer, or the client behind a trusted proxy."""
    return request.remote_addr or "unknown"


def from_trusted_proxy(request: _Request) -> bool:
    """Whether the request reached us through a trusted proxy (so its X-Request-ID counts)."""
    return bool(request.scope.get(TRUSTED_PEER))

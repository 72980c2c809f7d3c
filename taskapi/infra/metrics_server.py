"""The worker's metrics listener: a small HTTP/1.1 server on the worker's own event loop that
answers `GET /metrics` (the process's metrics, `taskapi.infra.metrics`) to the peers of
`TASKAPI_METRICS_ALLOW`, and 404 in the API's error envelope to anything else. One request per
connection; nothing it does blocks the loop longer than rendering the metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import orjson

from taskapi.errors import CODES, MESSAGES
from taskapi.infra import metrics
from taskapi.settings import Network

log = logging.getLogger(__name__)
READ_TIMEOUT_SECONDS = 5.0
MAX_HEADER_LINES = 100
NOT_FOUND = orjson.dumps(
    {"status": "error", "error": {"message": MESSAGES[404], "code": CODES[404]}}
)


class MetricsListener:
    """Listens on `host:port` from `start` until `stop`."""

    def __init__(
        self,
        host: str,
        port: int,
        allow: Sequence[Network],
        before_scrape: Callable[[], Awaitable[None]],
    ) -> None:
        self.host = host
        self.port = port
        self.allow = tuple(allow)
        self.before_scrape = before_scrape
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen (OSError when the address cannot be bound)."""
        self._server = await asyncio.start_server(self._answer, self.host, self.port)
        log.info("metrics on http://%s:%s/metrics", self.host, self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            async with asyncio.timeout(READ_TIMEOUT_SECONDS):
                method, path = await _request_of(reader)
            if (
                method in (b"GET", b"HEAD")
                and path == b"/metrics"
                and metrics.allowed(peer[0] if peer else None, self.allow)
            ):
                await self.before_scrape()
                body = metrics.exposition()
                head = _head(200, metrics.CONTENT_TYPE, len(body))
            else:
                body = NOT_FOUND
                head = _head(404, "application/json", len(body))
            writer.write(head + (b"" if method == b"HEAD" else body))
            await writer.drain()
        except (TimeoutError, ValueError, ConnectionError, asyncio.IncompleteReadError):
            pass  # a client that sent no request in time, or not HTTP: closed unanswered
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def _request_of(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The request line's method and path (its query left off); the headers are read and
    ignored. ValueError for something that is not an HTTP request."""
    line = await reader.readline()
    words = line.split()
    if len(words) != 3 or not words[2].startswith(b"HTTP/"):
        raise ValueError("not an HTTP request line")
    for _ in range(MAX_HEADER_LINES):
        header = await reader.readline()
        if header in (b"\r\n", b"\n"):
            return words[0], words[1].split(b"?", 1)[0]
        if not header:
            raise asyncio.IncompleteReadError(header, None)
    raise ValueError("too many header lines")


def _head(status: int, content_type: str, length: int) -> bytes:
    reason = {200: "OK", 404: "Not Found"}[status]
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    ).encode()

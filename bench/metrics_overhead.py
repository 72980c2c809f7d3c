"""CPU per request of the per-request metrics (taskapi/http/metrics.py's middleware: the route
note, the status capture, one perf_counter pair, a counter and a histogram), measured around a
null ASGI app that answers at once, so nothing but the metrics differs.

Run by hand: `.venv/bin/python bench/metrics_overhead.py [--requests 100000] [--repeats 5]`.
Each figure is the minimum over the repeats of time.process_time per request (the machine is
shared and noisy). `make bench BENCH_ARGS="--metrics-cost 3"` measures the same on S1's
throughput end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from taskapi.http.metrics import RequestMetrics, note_route
from taskapi.settings.values import parse_networks

SCOPE = {
    "type": "http",
    "method": "GET",
    "path": "/api/tasks/12345",
    "client": ("127.0.0.1", 50000),
    "headers": [],
}
TEMPLATE = "/api/tasks/<task_id:task_id>"


async def null_app(scope: Any, receive: Any, send: Any) -> None:
    """Answers 200 with an empty body; notes the route, as the app's after-request step does."""
    note_route(scope, TEMPLATE)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def receive() -> Any:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: Any) -> None:
    return None


async def per_request(app: Any, requests: int) -> float:
    """CPU seconds per request of `requests` calls of `app`."""
    started = time.process_time()
    for _ in range(requests):
        await app(SCOPE, receive, send)
    return (time.process_time() - started) / requests


async def nothing() -> None:
    return None


async def main(requests: int, repeats: int) -> None:
    measured = RequestMetrics(null_app, parse_networks("127.0.0.1"), nothing)
    bare, wrapped = [], []
    for _ in range(repeats):
        bare.append(await per_request(null_app, requests))
        wrapped.append(await per_request(measured, requests))
    base, with_metrics = min(bare), min(wrapped)
    print(
        f"null ASGI app: {1e6 * base:.2f} µs per request; with the request metrics "
        f"{1e6 * with_metrics:.2f} µs: {1e6 * (with_metrics - base):.2f} µs of CPU per request"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.requests, arguments.repeats))

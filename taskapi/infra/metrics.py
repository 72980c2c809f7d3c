"""The process's Prometheus metrics (prometheus-client): every metric object lives here, and the
rest of the package calls the small functions below. Label values come from fixed sets (route
templates, job names, fixed words), never from a raw path or a user's input.

The API serves them at `GET /metrics` (`taskapi.http.metrics`), the worker on its own port
(`taskapi.infra.metrics_server`), both in Prometheus' text format (version 0.0.4), to the peers
of `TASKAPI_METRICS_ALLOW` alone."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from taskapi.settings import Network

# the text format every Prometheus reads (the library's own default is its newer 1.0.0)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
UNMATCHED = "unmatched"  # the route label of a request that matched no route (404, 405)
OTHER_METHOD = "OTHER"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# request latency: from 1 ms (a cached read) to 10 s (a request held by a slow store)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# no `_created` series beside each counter and histogram
# type gap: prometheus-client leaves disable_created_metrics unannotated
disable_created_metrics()  # type: ignore[no-untyped-call]

REQUESTS = Counter(
    "taskapi_http_requests", "HTTP requests answered.", ["route", "method", "status"]
)
LATENCY = Histogram(
    "taskapi_http_request_duration_seconds",
    "Time from a request's arrival to its answer's end.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
CACHE_HITS = Counter("taskapi_cache_hits", "Cached reads answered from the cache.", ["kind"])
CACHE_MISSES = Counter("taskapi_cache_misses", "Cached reads answered by the database.", ["kind"])
RATE_LIMITED = Counter(
    "taskapi_ratelimit_refusals",
    "Requests refused 429: by a route's limits, or by the failed-login budgets.",
    ["limit"],
)
IDEMPOTENT_REPLAYS = Counter(
    "taskapi_idempotent_replays", "Retries answered with the kept answer of their key."
)
REDIS_ERRORS = Counter(
    "taskapi_redis_errors", "Redis calls that failed (errors and timeouts).", ["component"]
)
BREAKER_OPEN = Gauge(
    "taskapi_redis_breaker_open",
    "1 from a failed Redis call until one succeeds again (calls skip Redis meanwhile).",
)
POOL_SIZE = Gauge("taskapi_db_pool_size", "Database connections the pool keeps.")
POOL_CHECKED_OUT = Gauge("taskapi_db_pool_checked_out", "Database connections in use.")
POOL_OVERFLOW = Gauge(
    "taskapi_db_pool_overflow", "Connections opened beyond the pool's size (negative: unopened)."
)
OUTBOX_PENDING = Gauge("taskapi_outbox_pending", "Outbox entries not yet relayed.")
OUTBOX_OLDEST = Gauge(
    "taskapi_outbox_oldest_seconds", "Age of the oldest pending outbox entry (0: none)."
)
IN_FLIGHT = Gauge(
    "taskapi_http_requests_in_flight",
    "Requests let in and not yet answering (at most TASKAPI_MAX_REQUESTS_IN_FLIGHT).",
)
WAITING = Gauge("taskapi_http_requests_waiting", "Requests waiting to be let in.")
JOBS_ENQUEUED = Counter("taskapi_jobs_enqueued", "Jobs handed to the queue.", ["job"])
JOBS_STARTED = Counter("taskapi_jobs_started", "Job runs started (each try).", ["job"])
JOBS_SUCCEEDED = Counter("taskapi_jobs_succeeded", "Job runs that succeeded.", ["job"])
JOBS_FAILED = Counter("taskapi_jobs_failed", "Job runs that failed for good.", ["job"])
JOBS_RETRIED = Counter("taskapi_jobs_retried", "Job runs that will be tried again.", ["job"])
JOB_DURATION = Histogram(
    "taskapi_job_duration_seconds", "Time of one run of a job.", ["job"], buckets=JOB_BUCKETS
)

# the children of the hot path's metrics, bound once per label set
_bound: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def request_answered(route: str, method: str, status: int, seconds: float) -> None:
    """One HTTP request: its route template (or UNMATCHED), method and status, and its time."""
    if method not in METHODS:
        method = OTHER_METHOD
    bound = _bound.get((route, method, status))
    if bound is None:
        bound = _bound[(route, method, status)] = (
            REQUESTS.labels(route, method, str(status)),
            LATENCY.labels(route, method),
        )
    bound[0].inc()
    bound[1].observe(seconds)


def cache_looked_up(kind: str, hit: bool) -> None:
    (CACHE_HITS if hit else CACHE_MISSES).labels(kind).inc()


def rate_limited(limit: str) -> None:
    """A 429: `limit` is "request" (a route's limits) or "login_failures"."""
    RATE_LIMITED.labels(limit).inc()


def idempotent_replay() -> None:
    IDEMPOTENT_REPLAYS.inc()


def redis_failed(component: str) -> None:
    REDIS_ERRORS.labels(component).inc()
    BREAKER_OPEN.set(1)


def redis_answered() -> None:
    BREAKER_OPEN.set(0)


def pool_sampled(size: int, checked_out: int, overflow: int) -> None:
    POOL_SIZE.set(size)
    POOL_CHECKED_OUT.set(checked_out)
    POOL_OVERFLOW.set(overflow)


def admission_sampled(in_flight: int, waiting: int) -> None:
    IN_FLIGHT.set(in_flight)
    WAITING.set(waiting)


def outbox_sampled(pending: int, oldest_seconds: float) -> None:
    OUTBOX_PENDING.set(pending)
    OUTBOX_OLDEST.set(oldest_seconds)


def jobs_known(names: Iterable[str]) -> None:
    """Every job's series exist from the start (at 0), so a rate over them is never empty."""
    for name in names:
        for counter in (JOBS_ENQUEUED, JOBS_STARTED, JOBS_SUCCEEDED, JOBS_FAILED, JOBS_RETRIED):
            counter.labels(name)
        JOB_DURATION.labels(name)


def jobs_enqueued(names: Iterable[str]) -> None:
    for name in names:
        JOBS_ENQUEUED.labels(name).inc()


def job_started(name: str) -> None:
    JOBS_STARTED.labels(name).inc()


def job_ended(name: str, outcome: str, seconds: float) -> None:
    """A run of a job ended: `outcome` is "succeeded", "retried" or "failed"."""
    counter = {"succeeded": JOBS_SUCCEEDED, "retried": JOBS_RETRIED}.get(outcome, JOBS_FAILED)
    counter.labels(name).inc()
    JOB_DURATION.labels(name).observe(seconds)


def exposition() -> bytes:
    """Every metric of this process, in the text format (`CONTENT_TYPE`)."""
    return generate_latest(REGISTRY)


def allowed(peer: str | None, networks: Sequence[Network]) -> bool:
    """Whether a socket's peer address may read the metrics (an IPv4 peer written as IPv6,
    `::ffff:a.b.c.d`, counts as its IPv4 address; no address: not allowed)."""
    if not peer:
        return False
    try:
        ip = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)

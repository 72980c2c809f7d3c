"""A view's policy, declared by decorators that only mark it: its rate limits, the token it
needs, the cache it is served from, whether it honours Idempotency-Key. The gate
(`taskapi.http.gate`) carries it out; every route declares its limits (a test walks the URL
map)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from quart_schema import security_scheme

from taskapi.http.tokens import ACCESS, REFRESH

F = TypeVar("F", bound=Callable[..., Any])
LIMITS_ATTRIBUTE = "_taskapi_limits"
AUTH_ATTRIBUTE = "_taskapi_auth"
CACHE_ATTRIBUTE = "_taskapi_cache"
IDEMPOTENT_ATTRIBUTE = "_taskapi_idempotent"
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
CacheKind = Literal["list", "detail"]


def default_limits(view: F) -> F:
    """The default limits (TASKAPI_RATELIMIT_DEFAULT)."""
    setattr(view, LIMITS_ATTRIBUTE, ("default",))
    return view


def limited(*names: str) -> Callable[[F], F]:
    """The default limits and the named ones (e.g. "login": TASKAPI_RATELIMIT_LOGIN)."""

    def decorator(view: F) -> F:
        setattr(view, LIMITS_ATTRIBUTE, ("default", *names))
        return view

    return decorator


def exempt(view: F) -> F:
    """No rate limit (health probes, the docs)."""
    setattr(view, LIMITS_ATTRIBUTE, ())
    return view


def _requires(kind: str) -> Callable[[F], F]:
    def decorator(view: F) -> F:
        setattr(view, AUTH_ATTRIBUTE, kind)
        documented: F = security_scheme(BEARER)(view)
        return documented

    return decorator


login_required = _requires(ACCESS)
refresh_token_required = _requires(REFRESH)


def cached(kind: CacheKind) -> Callable[[F], F]:
    """GET answers (200) are cached per caller as `kind` ("list" or "detail")."""

    def decorator(view: F) -> F:
        setattr(view, CACHE_ATTRIBUTE, kind)
        return view

    return decorator


def idempotent(view: F) -> F:
    """A POST that honours Idempotency-Key: its answer is kept for the retries with that key."""
    setattr(view, IDEMPOTENT_ATTRIBUTE, True)
    return view


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    limit_names: tuple[str, ...] | None  # None: the view did not say
    auth: str | None
    cache: CacheKind | None
    idempotent: bool = False


def policy_of(view: Callable[..., Any]) -> Policy:
    return Policy(
        getattr(view, LIMITS_ATTRIBUTE, None),
        getattr(view, AUTH_ATTRIBUTE, None),
        getattr(view, CACHE_ATTRIBUTE, None),
        getattr(view, IDEMPOTENT_ATTRIBUTE, False),
    )

"""The auth decorators: a verified token of the right kind whose user still exists."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from quart import g
from quart_schema import security_scheme

from taskapi.auth.tokens import ACCESS, REFRESH, TokenClaims, read_bearer_token
from taskapi.db import request_connection
from taskapi.errors import APIError
from taskapi.redis_pool import RedisUnavailable
from taskapi.state import app_state

if TYPE_CHECKING:
    from taskapi.ratelimit import RateStep

P = ParamSpec("P")
R = TypeVar("R")
BEARER = [{"bearerAuth": []}]
CACHED_ATTRIBUTE = "_taskapi_cached"  # set by taskapi.cache.cached on the views it serves


@dataclasses.dataclass(frozen=True, slots=True)
class Viewer:
    """The authenticated caller of a request."""

    id: int
    role: str
    claims: TokenClaims

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def current_viewer() -> Viewer:
    viewer: Viewer = g.viewer
    return viewer


async def _is_revoked(claims: TokenClaims) -> bool | None:
    """True or False; None when the revocation store cannot answer. The rate limiter may have
    asked already, in the same round trip as its own step, moments earlier in this request."""
    prefetched: tuple[str, bool] | None = g.get("_revocation_prefetch")
    if prefetched is not None and prefetched[0] == claims.jti:
        return prefetched[1]
    try:
        return await app_state().revocations.is_revoked(claims.jti)
    except RedisUnavailable:
        return None


def _refuse_revoked(revoked: bool | None) -> None:
    """Apply the answer: 401 when revoked; when unknown, the configured policy."""
    if revoked is None:
        if app_state().settings.revocation_fail_open:
            return
        raise APIError(
            503, "Cannot check the token right now. Try again shortly.", code="service_unavailable"
        )
    if revoked:
        raise APIError(401, "Token has been revoked.", code="token_revoked")


def _requires(kind: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    def decorator(view: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @wraps(view)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            claims = read_bearer_token(kind)
            state = app_state()
            # A cached GET's rate-limit step, left to us by the limiter: settled before any
            # answer or database work, in the cache lookup's round trip when it can be.
            step: RateStep | None = g.pop("_rate_step", None)
            role = state.roles.cached_role(claims.user_id)
            if role is None:
                if step is not None:
                    await step.run()
                    step = None
                role = await state.roles.role_of(request_connection, claims.user_id)
            if role is None:
                raise APIError(401, "The token's user no longer exists.", code="token_invalid")
            viewer = Viewer(id=claims.user_id, role=role, claims=claims)
            g.viewer = viewer
            cached_kind = getattr(view, CACHED_ATTRIBUTE, None)
            if cached_kind is not None and state.cache is not None:
                # one round trip for the rate limit (when still pending), the revocation check
                # and the cached answer
                lookup = await state.cache.lookup(
                    cached_kind, viewer, kwargs.get("task_id"), claims.jti, state.revocations, step
                )
                if step is not None:
                    step.apply(lookup.rate)
                _refuse_revoked(lookup.revoked)
                g._cache_lookup = lookup
            else:
                if step is not None:
                    await step.run()
                _refuse_revoked(await _is_revoked(claims))
            return await view(*args, **kwargs)

        return security_scheme(BEARER)(wrapper)

    return decorator


login_required: Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]] = (
    _requires(ACCESS)
)
refresh_token_required: Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]] = (
    _requires(REFRESH)
)

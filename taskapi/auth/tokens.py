"""JSON Web Tokens: the only module that touches quart-jwt-extended.

The library issues and decodes; its decorators and loaders are not used, because its callbacks
are synchronous (see DEPENDENCIES.md). Verification failures become our 401 envelope here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import jwt
from quart import Quart, request
from quart_jwt_extended import JWTManager, create_access_token, create_refresh_token, decode_token

from taskapi.errors import APIError
from taskapi.settings import Settings

ACCESS = "access"
REFRESH = "refresh"
ALGORITHM = "HS256"


@dataclasses.dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token says."""

    user_id: int
    kind: str
    jti: str
    expires_at: int
    role: str | None


def init_tokens(app: Quart, settings: Settings) -> None:
    app.config.update(
        JWT_SECRET_KEY=settings.jwt_secret_key,
        JWT_ALGORITHM=ALGORITHM,
        JWT_DECODE_ALGORITHMS=[ALGORITHM],
        JWT_ACCESS_TOKEN_EXPIRES=dt.timedelta(seconds=settings.access_token_expires),
        JWT_REFRESH_TOKEN_EXPIRES=dt.timedelta(seconds=settings.refresh_token_expires),
        JWT_TOKEN_LOCATION=["headers"],
        JWT_IDENTITY_CLAIM="identity",
        # The role travels as a top-level "role" claim: the library puts its user claims
        # under this key, and we hand it the role string itself.
        JWT_USER_CLAIMS="role",
    )
    JWTManager(app)


def issue_access_token(user_id: int, role: str) -> str:
    token: str = create_access_token(identity=user_id, user_claims=role)
    return token


def issue_refresh_token(user_id: int) -> str:
    token: str = create_refresh_token(identity=user_id)
    return token


def read_bearer_token(kind: str) -> TokenClaims:
    """Verify the request's `Authorization: Bearer` token of the given kind, or raise 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if not header:
        raise APIError(401, "Missing Authorization header.", code="token_missing")
    if scheme.lower() != "bearer" or not token or " " in token:
        raise APIError(401, "Expected 'Authorization: Bearer <token>'.", code="token_invalid")
    try:
        data = decode_token(token)
    except jwt.ExpiredSignatureError:
        raise APIError(401, "Token has expired.", code="token_expired") from None
    except Exception:  # every other decode failure is the same answer to the client
        raise APIError(401, "Invalid token.", code="token_invalid") from None
    claims = _claims_from(data)
    if claims.kind != kind:
        raise APIError(401, f"Only {kind} tokens are allowed here.", code="token_wrong_type")
    return claims


def _claims_from(data: dict[str, object]) -> TokenClaims:
    user_id, jti, exp, role = (
        data.get("identity"),
        data.get("jti"),
        data.get("exp"),
        data.get("role"),
    )
    if (
        not isinstance(user_id, int)
        or isinstance(user_id, bool)
        or not isinstance(jti, str)
        or not isinstance(exp, int)
    ):
        raise APIError(401, "Invalid token.", code="token_invalid")
    return TokenClaims(
        user_id=user_id,
        kind=str(data.get("type")),
        jti=jti,
        expires_at=exp,
        role=role if isinstance(role, str) else None,
    )

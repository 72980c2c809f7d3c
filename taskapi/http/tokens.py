"""JSON Web Tokens: the only module that touches quart-jwt-extended.

The library decodes; its decorators and loaders are not used, because its callbacks are
synchronous (an `async def` loader is never awaited). Tokens are issued with PyJWT in the
library's format, since the library can add only one custom claim and ours are more (`role`,
`gen`, `rjti`, `rexp`).
Verification failures become our 401 envelope here.

Keys: tokens are signed with `TASKAPI_JWT_SECRET_KEY` and name it in their `kid` header (its
fingerprint, `key_id`); a token is verified with the key its `kid` names, which may also be one
of `TASKAPI_JWT_ACCEPTED_KEYS`, so that keys can be rotated one instance at a time. A token
without `kid` (issued before tokens carried one) is tried with each key.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import hashlib
import time
import uuid
from collections import OrderedDict
from typing import Any, TypeGuard

import jwt
from quart import Quart, current_app, request
from quart_jwt_extended import JWTManager, decode_token

from taskapi.domain.models import MAX_ID
from taskapi.errors import APIError
from taskapi.settings import Settings

ACCESS = "access"
REFRESH = "refresh"
ALGORITHM = "HS256"
GENERATION = "gen"  # the account's token generation when the token was issued
# An access token names the refresh token it was issued with (login) or from (/auth/refresh),
# and when that one expires, so that logging out with the access token revokes both.
REFRESH_JTI, REFRESH_EXPIRES = "rjti", "rexp"
KEY_ID_LENGTH = 16  # hex digits of the key's SHA-256 in a token's `kid` (64 bits)


@dataclasses.dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token says."""

    user_id: int
    kind: str
    jti: str
    expires_at: int
    generation: int = 0  # tokens issued before the claim existed, like accounts then, are at 0
    # an access token's refresh token (None: a refresh token, or an access token from before)
    refresh_jti: str | None = None
    refresh_expires_at: int = 0


def key_id(key: str) -> str:
    """A key's name in the `kid` header: the start of its SHA-256, which does not reveal it."""
    return hashlib.sha256(key.encode()).hexdigest()[:KEY_ID_LENGTH]


@dataclasses.dataclass(frozen=True, slots=True)
class SigningKeys:
    """The key that signs, and every key that verifies (by key id, the signing key first)."""

    signing: str
    verifying: dict[str, str]

    @classmethod
    def from_settings(cls, settings: Settings) -> SigningKeys:
        keys = (settings.jwt_secret_key, *settings.jwt_accepted_keys)
        return cls(settings.jwt_secret_key, {key_id(key): key for key in keys})

    def candidates(self, kid: object) -> list[str]:
        """The keys a token with this `kid` header may be signed with: the one it names (none
        when no key has that id), or all of them for a token without one."""
        if kid is None:
            return list(self.verifying.values())
        key = self.verifying.get(kid) if isinstance(kid, str) else None
        return [] if key is None else [key]


# The key `_decode` has the library verify a token with, handed to its decode-key hook.
_trying: contextvars.ContextVar[str] = contextvars.ContextVar("taskapi_jwt_key")


def _key_being_tried(_claims: dict[str, Any], _headers: dict[str, Any]) -> str:
    return _trying.get()


def init_tokens(app: Quart, settings: Settings) -> None:
    app.config.update(
        JWT_ALGORITHM=ALGORITHM,
        JWT_DECODE_ALGORITHMS=[ALGORITHM],
        JWT_ACCESS_TOKEN_EXPIRES=dt.timedelta(seconds=settings.access_token_expires),
        JWT_REFRESH_TOKEN_EXPIRES=dt.timedelta(seconds=settings.refresh_token_expires),
        JWT_TOKEN_LOCATION=["headers"],
        JWT_IDENTITY_CLAIM="identity",
        # The role travels as a top-level "role" claim (informational: the gate reads the
        # database's); the library's decoder looks for user claims under this key.
        JWT_USER_CLAIMS="role",
    )
    JWTManager(app).decode_key_loader(_key_being_tried)
    app.extensions["taskapi.tokens"] = VerifiedTokens()
    app.extensions["taskapi.signing_keys"] = SigningKeys.from_settings(settings)


def issue_tokens(user_id: int, role: str, generation: int) -> tuple[str, str]:
    """A login's access and refresh token; the access token names the refresh token."""
    refresh, refresh_claims = _encode(user_id, REFRESH, {GENERATION: generation})
    return issue_access_token(user_id, role, generation, refresh_claims), refresh


def issue_access_token(
    user_id: int, role: str, generation: int, refresh: TokenClaims | None = None
) -> str:
    """An access token; `refresh` is the refresh token it is issued with or from."""
    claims: dict[str, object] = {"fresh": False, "role": role, GENERATION: generation}
    if refresh is not None:
        claims |= {REFRESH_JTI: refresh.jti, REFRESH_EXPIRES: refresh.expires_at}
    return _encode(user_id, ACCESS, claims)[0]


# workaround: quart-jwt-extended nests custom claims under one key (pinned by tests/test_library_defects.py::test_jwt_extended_nests_custom_claims_under_one_key)
def _encode(user_id: int, kind: str, claims: dict[str, object]) -> tuple[str, TokenClaims]:
    """The encoded token and what it says."""
    config = current_app.config
    lifetime: dt.timedelta = config[
        "JWT_ACCESS_TOKEN_EXPIRES" if kind == ACCESS else "JWT_REFRESH_TOKEN_EXPIRES"
    ]
    now = dt.datetime.now(dt.UTC)
    payload = {
        "iat": now,
        "nbf": now,
        "jti": str(uuid.uuid4()),
        "exp": int((now + lifetime).timestamp()),  # whole seconds, as PyJWT would write it
        "identity": user_id,
        "type": kind,
        **claims,
    }
    keys: SigningKeys = current_app.extensions["taskapi.signing_keys"]
    token = jwt.encode(
        payload, keys.signing, algorithm=ALGORITHM, headers={"kid": key_id(keys.signing)}
    )
    return token, _claims_from(payload)


def read_bearer_token(kind: str) -> TokenClaims:
    """Verify the request's `Authorization: Bearer` token of the given kind, or raise 401
    (the gate calls it once per request)."""
    claims = _verify_bearer()
    if claims.kind != kind:
        raise APIError(401, f"Only {kind} tokens are allowed here.", code="token_wrong_type")
    return claims


def _verify_bearer() -> TokenClaims:
    return verify_token(bearer_token(request.headers.get("Authorization", "")))


def bearer_token(header: str) -> str:
    """The token of an `Authorization: Bearer <token>` header's value, or 401."""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if not header:
        raise APIError(401, "Missing Authorization header.", code="token_missing")
    if scheme.lower() != "bearer" or not token or " " in token:
        raise APIError(401, "Expected 'Authorization: Bearer <token>'.", code="token_invalid")
    return token


def verify_token(token: str) -> TokenClaims:
    """Decode and verify one encoded token (signature, expiry, claims), or raise 401.

    A token that verified once is remembered by this process (keyed by its exact bytes, so by
    its signature too) until it expires: decoding costs more than the rest of a cached read.
    Revocation is not cached: the gate asks the revocation store on every request.
    """
    verified: VerifiedTokens = current_app.extensions["taskapi.tokens"]
    claims = verified.get(token)
    if claims is not None:
        return claims
    claims = _decode(token)
    verified.put(token, claims)
    return claims


class VerifiedTokens:
    """A bounded map of token → claims, each entry valid until the token's own expiry."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, TokenClaims] = OrderedDict()

    def get(self, token: str) -> TokenClaims | None:
        claims = self._entries.get(token)
        if claims is None:
            return None
        if claims.expires_at <= time.time():
            del self._entries[token]
            return None
        self._entries.move_to_end(token)
        return claims

    def put(self, token: str, claims: TokenClaims) -> None:
        self._entries[token] = claims
        if len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every verified token (what a fresh process knows)."""
        self._entries.clear()


def _decode(token: str) -> TokenClaims:
    """Have the library verify the token with each key it may be signed with, until one fits."""
    keys: SigningKeys = current_app.extensions["taskapi.signing_keys"]
    try:
        candidates = keys.candidates(jwt.get_unverified_header(token).get("kid"))
    except jwt.InvalidTokenError:
        raise APIError(401, "Invalid token.", code="token_invalid") from None
    for key in candidates:
        tried = _trying.set(key)
        try:
            data = decode_token(token)
        except jwt.InvalidSignatureError:  # signed with another key (a token without kid)
            continue
        except jwt.ExpiredSignatureError:  # checked after the signature: this key signed it
            raise APIError(401, "Token has expired.", code="token_expired") from None
        except Exception:  # every other decode failure is the same answer to the client
            raise APIError(401, "Invalid token.", code="token_invalid") from None
        finally:
            _trying.reset(tried)
        if _declared_type(token) not in (ACCESS, REFRESH):
            raise APIError(401, "Invalid token.", code="token_invalid")
        return _claims_from(data)
    raise APIError(401, "Invalid token.", code="token_invalid")


# workaround: quart-jwt-extended takes a token without "type" for an access token (pinned by tests/test_library_defects.py::test_jwt_extended_fills_in_a_missing_type_as_access)
def _declared_type(token: str) -> object:
    """The `type` claim as the token itself carries it (read after the library verified it)."""
    return jwt.decode(token, options={"verify_signature": False}).get("type")


def _claims_from(data: dict[str, object]) -> TokenClaims:
    user_id, jti, exp, generation = (
        data.get("identity"),
        data.get("jti"),
        data.get("exp"),
        data.get(GENERATION, 0),
    )
    refresh_jti, refresh_exp = data.get(REFRESH_JTI), data.get(REFRESH_EXPIRES, 0)
    if (
        not _is_int(user_id)
        or not 1 <= user_id <= MAX_ID  # the id columns are 32-bit: no account has another
        or not isinstance(jti, str)
        or not isinstance(exp, int)
        or not _is_int(generation)
        or (refresh_jti is not None and not isinstance(refresh_jti, str))
        or not _is_int(refresh_exp)
        or (refresh_jti is None) != (refresh_exp == 0)  # both or neither
    ):
        raise APIError(401, "Invalid token.", code="token_invalid")
    return TokenClaims(
        user_id=user_id,
        kind=str(data.get("type")),
        jti=jti,
        expires_at=exp,
        generation=generation,
        refresh_jti=refresh_jti,
        refresh_expires_at=refresh_exp,
    )


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)

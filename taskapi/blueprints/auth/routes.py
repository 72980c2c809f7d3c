"""Routes of /auth: thin views over the account service and the token module."""

from __future__ import annotations

import contextlib

from quart import Blueprint, Response, request
from quart_schema import document_request, document_response, tag

from taskapi.blueprints.auth.schemas import (
    AccessToken,
    LoginRequest,
    LogoutRequest,
    ProfileEnvelope,
    RegisterRequest,
    RegisterResponse,
    TokenPair,
)
from taskapi.domain import accounts
from taskapi.domain.limits import login_keys
from taskapi.domain.parts import Parts
from taskapi.errors import APIError
from taskapi.http.db_scope import request_connection
from taskapi.http.docs import LOGOUT_ERRORS, empty_response, errors
from taskapi.http.gate import current_admission, current_claims, current_viewer
from taskapi.http.policy import default_limits, limited, login_required, refresh_token_required
from taskapi.http.responses import json_response, no_content, success
from taskapi.http.state import current_parts
from taskapi.http.tokens import TokenClaims, issue_access_token, issue_tokens, verify_token
from taskapi.http.validation import json_body, parse_body
from taskapi.infra import metrics
from taskapi.infra.stores import LoginCharge, StoreUnavailable

bp = Blueprint("auth", __name__)


@bp.after_request
async def _no_store(response: Response) -> Response:
    """Every /auth answer, errors included, may carry a token or account data: never cache it."""
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/register")
@default_limits
@tag(["auth"])
@json_body(
    RegisterRequest, invalid_status=400, missing_message="Missing username, email, or password"
)
@document_response(RegisterResponse, 201)
@errors(400, 409, 413, 415, 429, 503)
async def register(data: RegisterRequest) -> Response:
    """Register a new user, with the ordinary role.

    The account's role is `user`; only an operator makes an admin (`taskapi users set-role`)."""
    user = await accounts.register_user(
        await request_connection(),
        current_parts().passwords,
        username=data.username,
        email=str(data.email),
        password=data.password,
    )
    return json_response({"message": "User registered successfully", "user_id": user.id}, 201)


@bp.post("/login")
@limited("login")
@tag(["auth"])
@json_body(LoginRequest, invalid_status=400, missing_message="Username and password required")
@document_response(TokenPair, 200)
@errors(400, 401, 413, 415, 429, 503)
async def login(data: LoginRequest) -> Response:
    """Exchange a username and password for an access and a refresh token."""
    parts = current_parts()
    charge = await _charge_the_attempt(parts, data.username)
    user = await accounts.authenticate(
        await request_connection(), parts.passwords, data.username, data.password
    )
    # the charge stands: it was a failure, or an account that may not log in (deactivated),
    # which gets the same answer, so that the answer tells no one its password was right
    if user is None or not user.is_active:
        raise APIError(401, "Invalid username or password", code="invalid_credentials")
    if charge is not None:
        with contextlib.suppress(StoreUnavailable):
            await parts.login_failures.succeeded(charge)
    access_token, refresh_token = issue_tokens(user.id, user.role, user.token_generation)
    return json_response(
        {
            "access_token": access_token,
            "refresh_token": refresh_token,
            "token_type": "bearer",
            "expires_in": parts.settings.access_token_expires,
        }
    )


@bp.post("/refresh")
@default_limits
@tag(["auth"])
@refresh_token_required
@document_response(AccessToken, 200)
@errors(401, 429, 503)
async def refresh() -> Response:
    """A new access token for the holder of a refresh token (it names that refresh token)."""
    viewer, claims = current_viewer(), current_claims()
    return json_response(
        {
            "access_token": issue_access_token(viewer.id, viewer.role, claims.generation, claims),
            "token_type": "bearer",
            "expires_in": current_parts().settings.access_token_expires,
        }
    )


@bp.get("/me")
@default_limits
@tag(["auth"])
@login_required
@document_response(ProfileEnvelope, 200)
@errors(401, 429, 503)
async def me() -> Response:
    """The caller's own account."""
    user = await accounts.get_user(await request_connection(), current_viewer().id)
    if user is None:
        raise APIError(401, "The token's user no longer exists.", code="token_invalid")
    return success(
        {
            "id": user.id,
            "username": user.username,
            "email": user.email,
            "role": user.role,
            "created_at": user.created_at.isoformat(),
        }
    )


@bp.post("/logout")
@default_limits
@tag(["auth"])
@login_required
@document_request(LogoutRequest)
@empty_response("Logged out: the token(s) are revoked until they would have expired.")
@errors(400, 401, 413, 415, 429, 503, texts=LOGOUT_ERRORS)
async def logout() -> Response:
    """Revoke the presented access token and the refresh token it names.

    A `refresh_token` in the optional body is revoked as well: it must be a refresh token of
    the caller's (400 `invalid_refresh_token` otherwise); an expired one is accepted."""
    viewer, claims, parts = current_viewer(), current_claims(), current_parts()
    revoked = {claims.jti: claims.expires_at}
    if claims.refresh_jti is not None:
        revoked[claims.refresh_jti] = claims.refresh_expires_at
    if (await request.get_data()).strip():
        data = await parse_body(LogoutRequest, invalid_status=400)
        if data.refresh_token is not None:
            refresh_claims = _own_refresh_token(data.refresh_token, viewer.id)
            if refresh_claims is not None:
                revoked[refresh_claims.jti] = refresh_claims.expires_at
    await parts.revocation_record.revoke(await request_connection(), revoked)
    return no_content()


async def _charge_the_attempt(parts: Parts, username: str) -> LoginCharge | None:
    """Charge this attempt to the account's failed-login budgets before the password is
    checked: 429 when this address's, or (from an address new to the account) the account's,
    is spent. None when Redis cannot answer and rate limits fail open."""
    try:
        keys = login_keys(username, current_admission().address)
        charge = await parts.login_failures.charge(keys)
    except StoreUnavailable:
        if parts.settings.ratelimit_fail_open:
            return None
        raise APIError(503, "Rate limiting is unavailable. Try again shortly.") from None
    if charge.retry_after:
        metrics.rate_limited("login_failures")
        raise APIError(
            429,
            "Too many failed logins for this username. Try again later.",
            code="rate_limited",
            headers={"Retry-After": str(charge.retry_after)},
        )
    return charge


def _own_refresh_token(token: str, user_id: int) -> TokenClaims | None:
    """The claims of the caller's refresh token; None when it has already expired."""
    try:
        claims = verify_token(token)
    except APIError as error:
        if error.code == "token_expired":
            return None
        raise APIError(
            400, "refresh_token is not a valid refresh token.", code="invalid_refresh_token"
        ) from None
    if claims.kind != "refresh" or claims.user_id != user_id:
        raise APIError(
            400, "refresh_token is not a refresh token of this user.", code="invalid_refresh_token"
        )
    return claims

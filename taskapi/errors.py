"""The error envelope, the one error type views raise, and the handlers that render both."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from quart import Quart, Response
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from taskapi.observability import current_request_id
from taskapi.responses import json_response

log = logging.getLogger(__name__)

# Stable machine-readable codes for the statuses the contract names.
CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}

MESSAGES: dict[int, str] = {
    400: "Bad request.",
    401: "Authentication required.",
    403: "You are not allowed to do this.",
    404: "The requested URL was not found on the server.",
    405: "The method is not allowed for the requested URL.",
    413: "The request body is larger than the limit.",
    415: "Content-Type must be application/json.",
    429: "Too many requests.",
    500: "An internal server error occurred.",
    503: "A required service is unavailable. Try again shortly.",
}


class APIError(Exception):
    """An error the client caused or must know about, rendered as the contract's envelope."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        *,
        code: str | None = None,
        details: Mapping[str, Sequence[str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.message = message or MESSAGES.get(status, "Error.")
        self.code = code or CODES.get(status, "error")
        self.details = {k: list(v) for k, v in details.items()} if details else None
        self.headers = dict(headers or {})
        if status == 401:
            self.headers.setdefault("WWW-Authenticate", "Bearer")
        super().__init__(self.message)


def error_body(
    message: str, code: str, details: Mapping[str, list[str]] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "code": code}
    if details:
        error["details"] = details
    return {"status": "error", "error": error}


def render(error: APIError) -> Response:
    body = error_body(error.message, error.code, error.details)
    return json_response(body, error.status, error.headers)


def register_error_handlers(app: Quart) -> None:
    """Every failure leaves as the envelope: ours, Werkzeug's, the database's and the unexpected."""

    @app.errorhandler(APIError)
    async def _api_error(error: APIError) -> Response:
        return render(error)

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        headers: dict[str, str] = {}
        if status == 405:
            allowed = getattr(error, "valid_methods", None) or []
            headers["Allow"] = ", ".join(sorted(allowed))
        message = MESSAGES.get(status) or (error.description or "Error.")
        return render(APIError(status, message, headers=headers))

    @app.errorhandler(sa_exc.OperationalError)
    @app.errorhandler(sa_exc.InterfaceError)
    @app.errorhandler(sa_exc.TimeoutError)
    @app.errorhandler(ConnectionError)
    @app.errorhandler(TimeoutError)
    async def _unavailable(error: Exception) -> Response:
        log.error("database unavailable: %s", type(error).__name__, exc_info=error)
        return render(APIError(503, "The database is unavailable. Try again shortly."))

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error", exc_info=error)
        body = error_body(MESSAGES[500], CODES[500])
        body["error"]["request_id"] = current_request_id()
        return json_response(body, 500)

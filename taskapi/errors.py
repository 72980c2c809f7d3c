"""The error vocabulary: the one error type the services and views raise, its codes, and the
envelope it is rendered in (by taskapi.http.errors)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

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


class ErrorBody(BaseModel):
    message: str = Field(examples=["Task with ID 7 not found"])
    code: str = Field(description="Stable machine-readable code.", examples=["not_found"])
    details: dict[str, list[str]] | None = Field(
        default=None, description="Field → problems (validation errors only)."
    )
    request_id: str | None = Field(
        default=None, description="On 500: the request id to quote when reporting it."
    )


class ErrorEnvelope(BaseModel):
    """Every error response."""

    status: Literal["error"]
    error: ErrorBody


def error_body(
    message: str,
    code: str,
    details: Mapping[str, list[str]] | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The envelope of an error, as `ErrorEnvelope` documents it (absent fields left out)."""
    error = ErrorBody(message=message, code=code, details=details or None, request_id=request_id)
    return ErrorEnvelope(status="error", error=error).model_dump(exclude_none=True)

"""The headers every answer carries, with or without nginx in front."""

from __future__ import annotations

from quart import Response, request

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


# on every answer to a request that carried credentials
CREDENTIALED = ("Cache-Control", "no-store")


def add_security_headers(response: Response) -> None:
    """The security headers, and `no-store` on any answer to a request that carried
    credentials."""
    headers = response.headers
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    if "Authorization" in request.headers:
        headers[CREDENTIALED[0]] = CREDENTIALED[1]

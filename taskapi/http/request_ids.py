"""Request ids (a trusted proxy's `X-Request-ID`, else a new one; see taskapi/http/proxies.py),
echoed in the response and put on every log line; and the security headers every answer carries.
"""

from __future__ import annotations

import re
import uuid

from quart import Response, request

from taskapi.http.proxies import from_trusted_proxy
from taskapi.infra.logs import current_request_id, request_id_var

_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def assign_request_id() -> None:
    """The request's id: a trusted proxy's well-formed `X-Request-ID`, else a new one."""
    incoming = request.headers.get("X-Request-ID", "")
    trusted = bool(incoming) and from_trusted_proxy(request) and _VALID_ID.match(incoming)
    request_id_var.set(incoming if trusted else uuid.uuid4().hex)


def stamp(response: Response) -> None:
    """Echo the request id; add the headers that must hold without nginx; `no-store` on any
    answer to a request that carried credentials."""
    headers = response.headers
    headers["X-Request-ID"] = current_request_id()
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    if "Authorization" in request.headers:
        headers["Cache-Control"] = "no-store"

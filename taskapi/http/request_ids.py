"""Request ids (a trusted proxy's `X-Request-ID`, else a new one; see taskapi/http/proxies.py),
echoed in the response and put on every log line; and the security headers every answer carries.
"""

from __future__ import annotations

import re
import uuid

from quart import Quart, Response, request

from taskapi.http.proxies import from_trusted_proxy
from taskapi.infra.logs import current_request_id, request_id_var
from taskapi.settings import Settings

_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def init_request_ids(app: Quart, settings: Settings) -> None:
    """Assign, echo and log request ids; add the headers that must hold without nginx."""

    @app.before_request
    async def _assign_request_id() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        trusted = bool(incoming) and from_trusted_proxy(request) and _VALID_ID.match(incoming)
        rid = incoming if trusted else uuid.uuid4().hex
        request_id_var.set(rid)

    @app.after_request
    async def _stamp_response(response: Response) -> Response:
        response.headers["X-Request-ID"] = current_request_id()
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if "Authorization" in request.headers:
            response.headers["Cache-Control"] = "no-store"
        return response

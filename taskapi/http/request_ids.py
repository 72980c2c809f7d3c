"""Request ids: a trusted proxy's `X-Request-ID` (see taskapi/http/proxies.py), else a new one;
echoed in the response and put on every log line."""

from __future__ import annotations

import re
import uuid

from quart import Response, request

from taskapi.http.proxies import from_trusted_proxy
from taskapi.infra.logs import current_request_id, request_id_var

_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def assign_request_id() -> None:
    """The request's id (`request_id_for`), on every log line of the request."""
    incoming = request.headers.get("X-Request-ID", "")
    request_id_var.set(request_id_for(incoming, from_trusted_proxy(request)))


def request_id_for(incoming: str, trusted_peer: bool) -> str:
    """A trusted proxy's well-formed `X-Request-ID`, else a new id."""
    if incoming and trusted_peer and _VALID_ID.match(incoming):
        return incoming
    return uuid.uuid4().hex


def echo_request_id(response: Response) -> None:
    response.headers["X-Request-ID"] = current_request_id()

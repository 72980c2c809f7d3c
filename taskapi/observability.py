"""Request ids, security headers and log records that carry the request id.

Every request gets an id: the `X-Request-ID` a trusted proxy sent (nginx sets it; whom we trust
is decided in taskapi/proxies.py), else a new one. It is echoed in the response, attached to
every log line of the request (and of the jobs it queued), and quoted in 500 answers.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid

from quart import Quart, Response, g, request

from taskapi.proxies import from_trusted_proxy
from taskapi.settings import Settings

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def current_request_id() -> str:
    return request_id_var.get()


def init_request_ids(app: Quart, settings: Settings) -> None:
    """Assign, echo and log request ids; add the headers that must hold without nginx."""

    @app.before_request
    async def _assign_request_id() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        trusted = bool(incoming) and from_trusted_proxy(request) and _VALID_ID.match(incoming)
        rid = incoming if trusted else uuid.uuid4().hex
        g.request_id = rid
        request_id_var.set(rid)

    @app.after_request
    async def _stamp_response(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id") or current_request_id()
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if "Authorization" in request.headers:
            response.headers["Cache-Control"] = "no-store"
        return response


class RequestIdFilter(logging.Filter):
    """Puts the current request (or job) id on every record as `request_id`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request id, message (and exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)

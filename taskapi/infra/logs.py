"""Logging for the entry points (asgi.py, the worker): one stderr handler on `taskapi`,
text or JSON (TASKAPI_LOG_FORMAT), every record carrying its request id."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from typing import TextIO

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(name)s] [%(request_id)s] %(message)s"


def configure_logging(level: str, log_format: str = "text") -> None:
    """Send taskapi's records to stderr at `level`; idempotent, leaves other loggers alone."""
    logger = logging.getLogger("taskapi")
    logger.setLevel(level)
    for old in [h for h in logger.handlers if isinstance(h, _TaskapiHandler)]:
        logger.removeHandler(old)
    handler = _TaskapiHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    handler.addFilter(RequestIdFilter())
    logger.addHandler(handler)
    logger.propagate = False


class _TaskapiHandler(logging.StreamHandler[TextIO]):
    """The handler configure_logging adds (and replaces when called again)."""


def current_request_id() -> str:
    """The id of the request (or job) being served; "-" outside one."""
    return request_id_var.get()


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

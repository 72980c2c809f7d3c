"""Logging for the entry points (asgi.py, the worker): one stderr handler on `taskapi`,
text or JSON (TASKAPI_LOG_FORMAT), every record carrying its request id."""

from __future__ import annotations

import logging
import sys

from taskapi.observability import JsonFormatter, RequestIdFilter

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(name)s] [%(request_id)s] %(message)s"


def configure_logging(level: str, log_format: str = "text") -> None:
    """Send taskapi's records to stderr at `level`; idempotent, leaves other loggers alone."""
    logger = logging.getLogger("taskapi")
    logger.setLevel(level)
    for handler in [h for h in logger.handlers if getattr(h, "_taskapi", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    handler.addFilter(RequestIdFilter())
    handler._taskapi = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False

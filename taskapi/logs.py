"""Logging for the entry points (asgi.py, the worker): one stderr handler on `taskapi`."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"


def configure_logging(level: str) -> None:
    """Send taskapi's records to stderr at `level`; idempotent, leaves other loggers alone."""
    logger = logging.getLogger("taskapi")
    logger.setLevel(level)
    if not any(getattr(h, "_taskapi", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._taskapi = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False

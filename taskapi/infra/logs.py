"""Logging for the entry points (asgi.py, the worker, the CLI): one stderr handler on `taskapi`,
text or JSON (TASKAPI_LOG_FORMAT), every record carrying its request id; and, for a whole
process, the same format for every other line it writes (hypercorn's, arq's, other libraries'
warnings, uncaught exceptions)."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import threading
import types
from collections.abc import Mapping
from typing import Any, TextIO

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(name)s] [%(request_id)s] %(message)s"
ACCESS_LOGGER = "hypercorn.access"
# the atoms of hypercorn's access records (`record.args`) that a JSON line carries as fields
ACCESS_FIELDS = {
    "client": "h",
    "method": "m",
    "path": "U",
    "query": "q",
    "status": "s",
    "bytes": "b",
    "duration_us": "D",
    "user_agent": "a",
}
UNCAUGHT_LOGGER = "taskapi.uncaught"


def configure_logging(level: str, log_format: str = "text") -> None:
    """Send taskapi's records to stderr at `level`; idempotent, leaves other loggers alone."""
    logger = logging.getLogger("taskapi")
    logger.setLevel(level)
    for old in [h for h in logger.handlers if isinstance(h, _TaskapiHandler)]:
        logger.removeHandler(old)
    logger.addHandler(_handler(log_format))
    logger.propagate = False


def configure_process_logging(level: str, log_format: str = "text") -> None:
    """configure_logging, and the same handler on the root logger for every other record of
    the process: hypercorn's and arq's loggers hand theirs to it (taskapi/config/hypercorn.toml,
    `worker.LOG_CONFIG`), other libraries' warnings reach it; Python warnings and exceptions
    nothing caught (in any thread, or ignored in a finalizer) are logged there too. For an
    entry point only: it takes over the process's hooks."""
    configure_logging(level, log_format)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _TaskapiHandler)]:
        root.removeHandler(old)
    handler = _handler(log_format)
    handler.addFilter(_not_handled_on_the_way)
    root.addHandler(handler)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    sys.unraisablehook = _log_unraisable


def _handler(log_format: str) -> _TaskapiHandler:
    handler = _TaskapiHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    handler.addFilter(RequestIdFilter())
    return handler


class _TaskapiHandler(logging.StreamHandler[TextIO]):
    """The handler configure_logging adds (and replaces when called again)."""


def _not_handled_on_the_way(record: logging.LogRecord) -> bool:
    """For the root handler: only records that no logger on their way up had a handler for
    (arq started without `--custom-log-dict` keeps its own handler: not its lines twice)."""
    logger: logging.Logger | None = logging.getLogger(record.name)
    while logger is not None and logger is not logging.root:
        if logger.handlers:
            return False
        logger = logger.parent if logger.propagate else None
    return True


def _log_uncaught(
    kind: type[BaseException], error: BaseException, trace: types.TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, trace)
        return
    logging.getLogger(UNCAUGHT_LOGGER).critical("uncaught exception", exc_info=(kind, error, trace))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger(UNCAUGHT_LOGGER).critical(
        "uncaught exception in thread %s", name, exc_info=args.exc_value
    )


def _log_unraisable(unraisable: Any) -> None:
    """`sys.unraisablehook`: an exception Python could only ignore (in a finalizer, say)."""
    error = unraisable.exc_value
    logging.getLogger(UNCAUGHT_LOGGER).error(
        "%s: %r",
        unraisable.err_msg or "Exception ignored in",
        unraisable.object,
        exc_info=error if isinstance(error, BaseException) else None,
    )


def current_request_id() -> str:
    """The id of the request (or job) being served; "-" outside one."""
    return request_id_var.get()


def _access_atoms(record: logging.LogRecord) -> Mapping[str, Any] | None:
    """The atoms of one of hypercorn's access records, else None."""
    if record.name == ACCESS_LOGGER and isinstance(record.args, Mapping):
        return record.args
    return None


class RequestIdFilter(logging.Filter):
    """Puts the current request (or job) id on every record as `request_id`; an access line's
    is the one its response carried (hypercorn logs it outside the request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            atoms = _access_atoms(record)
            sent = dict.get(atoms, "{x-request-id}o") if isinstance(atoms, dict) else None
            record.request_id = sent or request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request id, message (and exception; an
    access line's client, method, path, status, bytes and duration as fields of their own)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        atoms = _access_atoms(record)
        if atoms is not None:
            entry.update({field: atoms[atom] for field, atom in ACCESS_FIELDS.items()})
            if str(entry["status"]).isdigit():
                entry["status"] = int(entry["status"])
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)

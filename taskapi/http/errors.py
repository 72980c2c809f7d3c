"""The handlers that render every failure as the contract's envelope."""

from __future__ import annotations

import logging

from quart import Quart, Response
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from taskapi.errors import CODES, MESSAGES, APIError, error_body
from taskapi.http.responses import json_response
from taskapi.http.state import current_parts
from taskapi.infra.db import is_unavailable
from taskapi.infra.logs import current_request_id

log = logging.getLogger(__name__)

# how long a client is asked to wait when the database cannot answer (a restart takes about that)
DATABASE_RETRY_AFTER_SECONDS = 1
DATABASE_UNAVAILABLE = "The database is unavailable. Try again shortly."


def database_unavailable() -> Response:
    return render(
        APIError(
            503, DATABASE_UNAVAILABLE, headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)}
        )
    )


def render(error: APIError) -> Response:
    body = error_body(error.message, error.code, error.details)
    return json_response(body, error.status, error.headers)


def register_error_handlers(app: Quart) -> None:
    """Every failure leaves as the envelope: ours, Werkzeug's, the database's and the unexpected."""

    @app.errorhandler(APIError)
    async def _api_error(error: APIError) -> Response:
        return render(error)

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        headers: dict[str, str] = {}
        if status == 405:
            allowed = getattr(error, "valid_methods", None) or []
            headers["Allow"] = ", ".join(sorted(allowed))
        message = MESSAGES.get(status) or (error.description or "Error.")
        return render(APIError(status, message, headers=headers))

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error", exc_info=error)
        body = error_body(MESSAGES[500], CODES[500], request_id=current_request_id())
        return json_response(body, 500)

    @app.errorhandler(sa_exc.TimeoutError)
    async def _busy(error: Exception) -> Response:
        """No pooled connection in time, SQLite staying locked: 503, logged each time."""
        log.error("database unavailable: %s", type(error).__name__, exc_info=error)
        return database_unavailable()

    @app.errorhandler(sa_exc.DBAPIError)
    @app.errorhandler(OSError)
    async def _driver_error(error: Exception) -> Response:
        """A restart, a shutdown, a cut or refused connection: 503, one log line per outage.
        Other operational and interface errors are `_busy`'s; any other driver error a 500."""
        if is_unavailable(error):
            current_parts().db.unavailable(error)
            return database_unavailable()
        if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError):
            return await _busy(error)
        return await _unexpected(error)

"""The handlers that render every failure as the contract's envelope."""

from __future__ import annotations

import logging

from quart import Quart, Response
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from taskapi.errors import CODES, MESSAGES, APIError, error_body
from taskapi.http.responses import json_response
from taskapi.infra.logs import current_request_id

log = logging.getLogger(__name__)


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

    @app.errorhandler(sa_exc.OperationalError)
    @app.errorhandler(sa_exc.InterfaceError)
    @app.errorhandler(sa_exc.TimeoutError)
    @app.errorhandler(ConnectionError)
    @app.errorhandler(TimeoutError)
    async def _unavailable(error: Exception) -> Response:
        log.error("database unavailable: %s", type(error).__name__, exc_info=error)
        return render(APIError(503, "The database is unavailable. Try again shortly."))

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error", exc_info=error)
        body = error_body(MESSAGES[500], CODES[500], request_id=current_request_id())
        return json_response(body, 500)

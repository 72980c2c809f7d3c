"""The app factory: settings → extensions → blueprints → error handlers."""

from __future__ import annotations

import logging

from quart import Quart, Response, request
from quart_schema import Info, QuartSchema

from taskapi import __version__
from taskapi.auth.routes import bp as auth_bp
from taskapi.auth.tokens import init_tokens
from taskapi.db import Database, close_request_session
from taskapi.errors import register_error_handlers
from taskapi.health import bp as health_bp
from taskapi.security import PasswordHasher
from taskapi.settings import Settings, load_settings
from taskapi.state import AppState
from taskapi.tasks.routes import bp as tasks_bp

DESCRIPTION = (
    "Task CRUD with JWT auth and roles. Every response is JSON in a "
    '`{"status": "success", "data": ...}` or `{"status": "error", "error": {...}}` envelope.'
)


def create_app(settings: Settings | None = None) -> Quart:
    """Build one app instance; pools open in before_serving and close in after_serving."""
    settings = settings or load_settings()
    logging.getLogger("taskapi").setLevel(settings.log_level)

    app = Quart("taskapi")
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_content_length,
        PROPAGATE_EXCEPTIONS=False,
        JSON_SORT_KEYS=False,
    )
    state = AppState(settings=settings, db=Database(settings), passwords=PasswordHasher(settings))
    app.extensions["taskapi"] = state

    init_tokens(app, settings)
    QuartSchema(
        app,
        info=Info(title="taskapi", version=__version__, description=DESCRIPTION),
        security_schemes={
            "bearerAuth": {"type": "http", "scheme": "bearer", "bearer_format": "JWT"}
        },
        scalar_ui_path=None,
    )

    app.register_blueprint(health_bp)
    app.register_blueprint(auth_bp, url_prefix="/auth")
    app.register_blueprint(tasks_bp, url_prefix="/api/tasks")
    register_error_handlers(app)

    @app.before_serving
    async def _open_pools() -> None:
        await state.db.connect()

    @app.after_serving
    async def _close_pools() -> None:
        await state.db.dispose()
        state.passwords.close()

    app.after_request(_empty_options_is_204)
    app.teardown_appcontext(close_request_session)
    return app


async def _empty_options_is_204(response: Response) -> Response:
    """Quart answers OPTIONS with an empty 200 `text/html`; the contract's empty answer is 204."""
    if request.method == "OPTIONS" and response.status_code == 200 and "Allow" in response.headers:
        response.status_code = 204
        response.headers.pop("Content-Type", None)
    return response

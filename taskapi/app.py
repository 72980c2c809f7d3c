"""The app factory: settings → extensions → blueprints → error handlers."""

from __future__ import annotations

import logging

from quart import Quart
from quart_schema import Info, Tag

from taskapi import __version__
from taskapi.blueprints.auth.routes import bp as auth_bp
from taskapi.blueprints.health import bp as health_bp
from taskapi.blueprints.jobs import bp as jobs_bp
from taskapi.blueprints.tasks.routes import bp as tasks_bp
from taskapi.domain.gauges import sample_gauges
from taskapi.domain.limits import limits_from
from taskapi.domain.parts import Parts
from taskapi.http.admission import InFlightLimit
from taskapi.http.db_scope import close_request_connection
from taskapi.http.docs import init_docs, plain_view
from taskapi.http.edge import CachedReads
from taskapi.http.errors import register_error_handlers
from taskapi.http.gate import Gate
from taskapi.http.metrics import RequestMetrics, note_quart_route, route_noter
from taskapi.http.policy import exempt
from taskapi.http.proxies import ForwardedHeaders
from taskapi.http.state import PARTS
from taskapi.http.tokens import init_tokens
from taskapi.http.urls import TaskIdConverter, reject_large_ids
from taskapi.infra import metrics
from taskapi.settings import Settings, load_settings
from taskapi.wiring import build_parts

DOCS_ENDPOINTS = ("openapi", "swagger_ui", "redoc_ui", "favicon", "static")
DESCRIPTION = (
    "Task CRUD with JWT auth and roles, background processing, shared rate limits and caching.\n\n"
    "Log in at `POST /auth/login`, then send `Authorization: Bearer <access_token>`. Every "
    'response is JSON in a `{"status": "success", "data": ...}` or '
    '`{"status": "error", "error": {"message", "code", "details"?}}` envelope (the `/auth` '
    "token answers are plain objects, as in the Flask original). A user sees and changes only "
    "their own tasks; an admin, every task."
)
TAGS = [
    Tag(name="auth", description="Accounts and tokens."),
    Tag(name="tasks", description="The task resource (owner or admin)."),
    Tag(name="jobs", description="Background processing of a task, and its status."),
    Tag(name="health", description="Liveness and readiness probes."),
]


def create_app(settings: Settings | None = None) -> Quart:
    """Build one app instance; pools open in before_serving and close in after_serving."""
    settings = settings or load_settings()
    logging.getLogger("taskapi").setLevel(settings.log_level)

    app = Quart("taskapi")
    app.url_map.converters["task_id"] = TaskIdConverter
    app.url_value_preprocessor(reject_large_ids)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_content_length,
        PROPAGATE_EXCEPTIONS=False,
        JSON_SORT_KEYS=False,
    )
    parts = build_parts(settings, "app")
    app.extensions[PARTS] = parts

    init_tokens(app, settings)
    init_docs(app, Info(title="taskapi", version=__version__, description=DESCRIPTION), TAGS)

    app.register_blueprint(health_bp)
    app.register_blueprint(auth_bp, url_prefix="/auth")
    app.register_blueprint(tasks_bp, url_prefix="/api/tasks")
    app.register_blueprint(jobs_bp, url_prefix="/api/tasks")
    for endpoint in DOCS_ENDPOINTS:
        if endpoint in app.view_functions:
            app.view_functions[endpoint] = exempt(plain_view(app, app.view_functions[endpoint]))
    if settings.metrics_enabled:
        app.before_request(note_quart_route)  # before the gate's: a refusal is counted too
    gate = _init_gate(app, parts)
    register_error_handlers(app)

    app.before_serving(parts.open)
    app.before_serving(parts.revocation_record.start)  # the API's alone: it serves the gate
    app.after_serving(parts.revocation_record.stop)
    app.after_serving(parts.close)
    app.teardown_appcontext(close_request_connection)
    # type gap: Quart types asgi_app as a method, yet documents replacing it with middleware
    # cached reads of known callers are answered before the framework (http/edge.py)
    app.asgi_app = CachedReads(app.asgi_app, app, gate, app.extensions["taskapi.tokens"])  # type: ignore[method-assign]
    if settings.trusted_proxies:  # believe forwarded headers from these peers only
        app.asgi_app = ForwardedHeaders(app.asgi_app, settings.trusted_proxies)  # type: ignore[method-assign]
    limit = None
    if settings.max_requests_in_flight:  # the rest wait their turn (http/admission.py)
        limit = InFlightLimit(
            app.asgi_app,
            settings.max_requests_in_flight,
            route_noter(app),
            max_body=settings.max_content_length,
            body_timeout=app.config["BODY_TIMEOUT"],
        )
        app.asgi_app = limit  # type: ignore[method-assign]
    if settings.metrics_enabled:  # outermost: every answer counted, the socket's peer checked
        app.asgi_app = RequestMetrics(  # type: ignore[method-assign]
            app.asgi_app, settings.metrics_allow, lambda: _sample(parts, limit)
        )
    return app


async def _sample(parts: Parts, limit: InFlightLimit | None) -> None:
    """The gauges read when /metrics is scraped."""
    if limit is not None:
        metrics.admission_sampled(limit.working, limit.waiting)
    await sample_gauges(parts.db)


def _init_gate(app: Quart, parts: Parts) -> Gate:
    settings = parts.settings
    limits = {
        "default": limits_from(settings.ratelimit_default),
        "login": limits_from(settings.ratelimit_login),
    }
    gate = Gate(parts, limits=limits)
    gate.init_app(app)
    return gate

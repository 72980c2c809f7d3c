"""The app factory: settings → extensions → blueprints → error handlers."""

from __future__ import annotations

import logging

from quart import Quart
from quart_schema import Info

from taskapi import __version__
from taskapi.blueprints.auth.routes import bp as auth_bp
from taskapi.blueprints.health import bp as health_bp
from taskapi.blueprints.jobs import bp as processing_bp
from taskapi.blueprints.tasks.routes import bp as tasks_bp
from taskapi.domain.accounts import RoleCache
from taskapi.domain.cache import ResponseCache
from taskapi.domain.effects import TaskEffects
from taskapi.domain.jobs import JobResources
from taskapi.domain.limits import (
    LoginBudgets,
    LoginFailures,
    MemoryLoginFailures,
    RedisLoginFailures,
    limits_from,
)
from taskapi.domain.queue import ArqQueue, InProcessQueue
from taskapi.domain.revocation import MemoryRevocations, RedisRevocations, RevocationStore
from taskapi.http.db_scope import close_request_connection
from taskapi.http.docs import init_docs, plain_view
from taskapi.http.errors import register_error_handlers
from taskapi.http.gate import Gate, exempt
from taskapi.http.proxies import ForwardedHeaders
from taskapi.http.state import AppState
from taskapi.http.tokens import init_tokens
from taskapi.http.urls import TaskIdConverter, reject_large_ids
from taskapi.infra.db import Database
from taskapi.infra.mail import Mailer
from taskapi.infra.passwords import PasswordHasher
from taskapi.infra.redis_pool import RedisPool
from taskapi.settings import Settings, load_settings

DOCS_ENDPOINTS = ("openapi", "swagger_ui", "redoc_ui", "scalar_ui", "static")
DESCRIPTION = (
    "Task CRUD with JWT auth and roles, background processing, shared rate limits and caching.\n\n"
    "Log in at `POST /auth/login`, then send `Authorization: Bearer <access_token>`. Every "
    'response is JSON in a `{"status": "success", "data": ...}` or '
    '`{"status": "error", "error": {"message", "code", "details"?}}` envelope (the `/auth` '
    "token answers are plain objects, as in the Flask original). A user sees and changes only "
    "their own tasks; an admin, every task."
)
TAGS = [
    {"name": "auth", "description": "Accounts and tokens."},
    {"name": "tasks", "description": "The task resource (owner or admin)."},
    {"name": "jobs", "description": "Background processing of a task, and its status."},
    {"name": "health", "description": "Liveness and readiness probes."},
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
    state = _build_state(settings)
    app.extensions["taskapi"] = state

    init_tokens(app, settings)
    init_docs(app, Info(title="taskapi", version=__version__, description=DESCRIPTION), TAGS)

    app.register_blueprint(health_bp)
    app.register_blueprint(auth_bp, url_prefix="/auth")
    app.register_blueprint(tasks_bp, url_prefix="/api/tasks")
    app.register_blueprint(processing_bp, url_prefix="/api/tasks")
    for endpoint in DOCS_ENDPOINTS:
        if endpoint in app.view_functions:
            app.view_functions[endpoint] = exempt(plain_view(app, app.view_functions[endpoint]))
    _init_gate(app, state)
    register_error_handlers(app)

    @app.before_serving
    async def _open_pools() -> None:
        if state.redis is not None:
            await state.redis.open()
        if state.cache is not None:
            await state.cache.open()
        await state.db.connect()

    @app.after_serving
    async def _close_pools() -> None:
        if state.jobs is not None:
            await state.jobs.close()
        await state.db.dispose()
        if state.redis is not None:
            await state.redis.close()
        state.passwords.close()

    app.teardown_appcontext(close_request_connection)
    if settings.trusted_proxies:  # believe forwarded headers from these peers only
        app.asgi_app = ForwardedHeaders(app.asgi_app, settings.trusted_proxies)  # type: ignore[method-assign]
    return app


def _build_state(settings: Settings) -> AppState:
    """The app's parts: in-process backends, or Redis-backed ones when REDIS_URL is set."""
    pool = None
    revocations: RevocationStore = MemoryRevocations()
    budgets = _login_budgets(settings)
    login_failures: LoginFailures = MemoryLoginFailures(budgets)
    if settings.redis_url:
        pool = RedisPool(
            settings.redis_url, settings.redis_timeout_ms, settings.redis_retry_after_ms
        )
        revocations = RedisRevocations(pool)
        login_failures = RedisLoginFailures(budgets, pool)
    state = AppState(
        settings=settings,
        db=Database(settings),
        passwords=PasswordHasher(settings),
        revocations=revocations,
        roles=RoleCache(settings.user_cache_seconds),
        login_failures=login_failures,
        redis=pool,
    )
    if settings.cache_enabled:
        state.cache = ResponseCache(settings, pool)
    job_effects = TaskEffects(state.cache, None)  # a job's own writes queue nothing
    if pool is not None:
        state.jobs = ArqQueue(pool)
    else:
        resources = JobResources(settings, state.db, job_effects, Mailer(settings))
        state.jobs = InProcessQueue(settings, resources)
    state.effects = TaskEffects(state.cache, state.jobs)
    return state


def _login_budgets(settings: Settings) -> LoginBudgets | None:
    if not settings.ratelimit_enabled:
        return None
    (per_address,) = limits_from(settings.ratelimit_login_failures_per_address)
    (per_account,) = limits_from(settings.ratelimit_login_failures_per_account)
    return LoginBudgets(
        per_address, per_account, settings.ratelimit_login_known_address_days * 86400
    )


def _init_gate(app: Quart, state: AppState) -> None:
    settings = state.settings
    limits = {
        "default": limits_from(settings.ratelimit_default),
        "login": limits_from(settings.ratelimit_login),
    }
    Gate(state, limits=limits).init_app(app)

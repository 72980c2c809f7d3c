"""Pins of the library defects that our code works around: each test drives the LIBRARY (not
taskapi) and asserts the defective behaviour, so an upgrade that fixes one fails its pin here and
shows which workaround may be dropped."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from pydantic import BaseModel
from quart import Quart
from redis.asyncio import Redis
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule

from tests.services import (
    free_port,
    redis_commands_during,
    running_pgbouncer,
    running_redis,
    running_sentinels,
    until,
)


def _redis_db(redis_server, db: int) -> str:
    """A Redis database of its own, so that a FLUSHDB here cannot touch another test's keys."""
    return redis_server.url.rsplit("/", 1)[0] + f"/{db}"


def _without_select(commands: list[str]) -> list[str]:
    """MONITOR's lines minus the SELECT that a new connection to a database index sends."""
    return [command for command in commands if command != "SELECT"]


@pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")
async def test_rate_limiter_redis_store_is_get_then_set(
    redis_server,
):
    """quart-rate-limiter's RedisStore reads (GET) and writes (SET) a limit in separate round
    trips, no script or transaction, and its keys get no TTL: concurrent requests all pass a
    shared limit. If this fails after an upgrade, the GCRA step in taskapi/infra/redis/gate.py (run
    by taskapi/http/gate.py) may be replaced by the library's limiter."""
    from quart_rate_limiter import RateLimiter, rate_limit
    from quart_rate_limiter.redis_store import RedisStore

    url = _redis_db(redis_server, 6)
    app = Quart("pin")
    RateLimiter(app, store=RedisStore(url))

    @app.get("/")
    @rate_limit(3, dt.timedelta(minutes=1))
    async def index() -> str:
        return "ok"

    async with Redis.from_url(url) as probe:
        await probe.flushdb()
        async with app.test_app() as test_app:
            client = test_app.test_client()
            commands = _without_select(await redis_commands_during(url, lambda: client.get("/")))
            keys = await probe.keys("*")
            ttls = [await probe.ttl(key) for key in keys]
        await probe.flushdb()
    assert commands == ["GET", "GET", "SET", "GET"], commands  # check, update, headers
    assert not {"EVAL", "EVALSHA", "WATCH", "MULTI"} & set(commands)
    assert len(keys) == 1
    assert ttls == [-1]  # no expiry


async def test_aiocache_clear_is_flushdb(
    redis_server,
):
    """aiocache 0.12's `clear()` ignores the cache's own namespace and runs FLUSHDB, wiping
    foreign keys in the same database. If this fails after an upgrade, the versioned keys in
    taskapi/infra/redis/state.py may give way to clear()."""
    from aiocache import RedisCache

    url = _redis_db(redis_server, 7)
    async with Redis.from_url(url) as probe:
        await probe.set("not-the-cache:queue", "job")
        cache = RedisCache(
            namespace="taskapi:cache",
            connection_pool_class=lambda **_: probe.connection_pool,
        )
        await cache.set("entry", "value")
        commands = await redis_commands_during(url, cache.clear)
        foreign = await probe.exists("not-the-cache:queue")
        await probe.flushdb()
    assert "FLUSHDB" in commands, commands
    assert foreign == 0


async def test_arq_enqueue_job_takes_three_round_trips(redis_server):
    """arq's `enqueue_job` WATCHes the job key and checks it before its MULTI/EXEC: three round
    trips per job. If this fails after an upgrade, taskapi/infra/redis/queue.py's one-MULTI
    `ArqQueue.enqueue` may call `enqueue_job` instead."""
    from arq.connections import ArqRedis

    url = _redis_db(redis_server, 8)
    async with Redis.from_url(url) as probe:
        arq = ArqRedis(pool_or_conn=probe.connection_pool)
        commands = _without_select(
            await redis_commands_during(url, lambda: arq.enqueue_job("process", 1))
        )
        await probe.flushdb()
    assert commands[:2] == ["WATCH", "EXISTS"], commands
    assert commands[2:] == ["MULTI", "PSETEX", "ZADD", "EXEC"], commands


async def test_arq_worker_exits_when_redis_goes_away():
    """arq's Worker lets the first Redis connection error out of its poll loop (`main()` raises,
    the process is gone), and `create_pool` raises once `conn_retries` are spent. If this fails
    after an upgrade, the worker's own client (outage_proof_pool in
    taskapi/infra/redis/worker_redis.py) may go."""
    from arq.connections import RedisSettings, create_pool
    from arq.worker import Worker, func
    from redis.exceptions import ConnectionError as RedisConnectionError

    async def noop(ctx: dict[str, object]) -> None:
        return None

    with running_redis() as server:
        worker = Worker(
            [func(noop, name="noop")],
            redis_settings=RedisSettings.from_dsn(server.url),
            handle_signals=False,
            poll_delay=0.05,
        )
        running = asyncio.ensure_future(worker.main())
        async with Redis.from_url(server.url) as probe:
            await until(lambda: probe.exists("arq:queue:health-check"), "the worker to poll")
        server.stop()
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(running, 30)
        await worker.pool.aclose()

    gone = RedisSettings(port=free_port(), conn_retries=1, conn_retry_delay=0)
    with pytest.raises(RedisConnectionError):
        await create_pool(gone)


def test_env_settings_source_reads_only_os_environ(monkeypatch):
    """pydantic-settings' EnvSettingsSource has no parameter for a mapping to read instead of
    os.environ; the only hook is its private `_load_env_vars`. If this fails after an upgrade,
    `_EnvironSource` in taskapi/settings/loader.py may use the public parameter instead."""
    from pydantic_settings import BaseSettings, EnvSettingsSource

    class Probe(BaseSettings):
        pin_value: str = "default"

    parameters = set(inspect.signature(EnvSettingsSource.__init__).parameters)
    assert not {"environ", "env_vars", "environment", "source"} & parameters, parameters
    assert "_load_env_vars" in EnvSettingsSource.__dict__  # the hook our override relies on
    monkeypatch.setenv("PIN_VALUE", "from os.environ")
    assert EnvSettingsSource(Probe)() == {"pin_value": "from os.environ"}
    assert "PIN_VALUE" in os.environ


async def test_jwt_extended_nests_custom_claims_under_one_key():
    """quart-jwt-extended's `create_access_token` takes custom claims only as `user_claims`,
    written under one configured key, never as top-level claims. If this fails after an
    upgrade, taskapi/http/tokens.py may issue its tokens through the library again."""
    from quart_jwt_extended import JWTManager, create_access_token

    app = Quart("pin")
    app.config.update(JWT_SECRET_KEY="pin-secret-" * 4, JWT_USER_CLAIMS="role")
    JWTManager(app)
    parameters = set(inspect.signature(create_access_token).parameters)
    async with app.app_context():
        token = create_access_token(identity=1, user_claims={"role": "user", "gen": 2})
    payload = jwt.decode(token, options={"verify_signature": False})
    assert "additional_claims" not in parameters
    assert payload["role"] == {"role": "user", "gen": 2}
    assert "gen" not in payload


async def test_jwt_extended_fills_in_a_missing_type_as_access():
    """quart-jwt-extended's `decode_token` gives a signed token that has no `type` claim the
    type "access". If this fails after an upgrade (the token is refused, or keeps no type),
    `_declared_type` in taskapi/http/tokens.py may be dropped."""
    from quart_jwt_extended import JWTManager, decode_token

    app = Quart("pin")
    secret = "pin-secret-" * 4
    app.config.update(JWT_SECRET_KEY=secret)
    JWTManager(app)
    token = jwt.encode({"identity": 1, "jti": "j", "exp": 2**40}, secret, algorithm="HS256")
    async with app.app_context():
        data = decode_token(token)
    assert "type" not in jwt.decode(token, options={"verify_signature": False})
    assert data["type"] == "access"


async def test_schema_document_response_none_204_breaks_spec():
    """quart-schema's `document_response(None, 204)` makes /openapi.json fail ("Cannot create
    schema for None"). If this fails after an upgrade, `empty_response` in taskapi/http/docs.py
    may be replaced by the library's decorator."""
    from quart_schema import QuartSchema, document_response

    app = Quart("pin")
    QuartSchema(app)

    @app.delete("/thing")
    @document_response(None, 204)
    async def remove() -> tuple[str, int]:
        return "", 204

    response = await app.test_client().get("/openapi.json")
    assert response.status_code == 500


async def test_schema_puts_response_headers_under_content():
    """quart-schema writes a response's headers model inside `content`, where OpenAPI ignores
    it, instead of beside it. If this fails after an upgrade, `response_headers` and
    `build_response_object` in taskapi/http/docs.py may be dropped."""
    from quart_schema import QuartSchema, validate_response

    class Body(BaseModel):
        value: int

    class Headers(BaseModel):
        x_pin: str

    app = Quart("pin")
    QuartSchema(app)

    @app.get("/thing")
    @validate_response(Body, 200, Headers)
    async def thing() -> tuple[Body, int, Headers]:
        return Body(value=1), 200, Headers(x_pin="a")

    spec = await (await app.test_client().get("/openapi.json")).get_json()
    response = spec["paths"]["/thing"]["get"]["responses"]["200"]
    assert "headers" in response["content"]
    assert "headers" not in response


def test_schema_docs_views_are_bound_methods():
    """quart-schema registers /openapi.json and the docs pages as bound methods, which cannot
    carry a decorator's attribute. If this fails after an upgrade, `plain_view` in
    taskapi/http/docs.py may be dropped."""
    from quart_schema import QuartSchema

    app = Quart("pin")
    QuartSchema(app)
    for endpoint in ("openapi", "swagger_ui", "redoc_ui"):
        view = app.view_functions[endpoint]
        assert inspect.ismethod(view), endpoint
        with pytest.raises(AttributeError):
            view._pin_mark = True


def test_werkzeug_int_max_gives_405_for_a_large_id():
    """Werkzeug's `int(max=...)` converter, with one rule per method, answers 405 instead of 404
    for an id above the maximum on every method but the first rule's. If this fails after an
    upgrade, `TaskIdConverter`/`reject_large_ids` in taskapi/http/urls.py may use `int(max=...)`."""
    urls = Map(
        [
            Rule("/t/<int(max=10):task_id>", methods=["GET"], endpoint="get"),
            Rule("/t/<int(max=10):task_id>", methods=["PUT"], endpoint="put"),
        ]
    ).bind("localhost")
    with pytest.raises(NotFound):
        urls.match("/t/11", method="GET")
    with pytest.raises(MethodNotAllowed):
        urls.match("/t/11", method="PUT")


def test_zxcvbn_rates_a_random_token_by_its_length_alone():
    """zxcvbn counts 10 guesses for every character it finds no pattern in, so its estimate
    of a random base64 token (6 bits a character) is at most 10**length: the 128-bit
    secrets.token_urlsafe(16) rates below a made-up 33-character phrase. If this fails after an
    upgrade, taskapi/secret_policy.py's own reading (random_share) may use zxcvbn's guesses."""
    from zxcvbn import zxcvbn

    token = "FTTa74qgAwj0bIPMl4jdvA"  # 22 characters, as token_urlsafe(16) gives
    rated = zxcvbn(token)["guesses_log10"]
    assert rated <= len(token)
    assert zxcvbn("AcmeCorpTaskApiProductionKey2024!")["guesses_log10"] > rated + 3
    with pytest.raises(ValueError, match="exceeds max length"):
        zxcvbn("x" * 73)  # and it refuses more than 72 characters unless told otherwise


def test_werkzeug_parse_etags_yields_none_for_an_empty_tag():
    """`""` is a valid entity tag (RFC 9110 allows an empty opaque-tag); werkzeug stores None."""
    from werkzeug.http import parse_etags

    assert parse_etags('""').as_set() == {None}
    assert parse_etags('"", "a"').as_set() == {None, "a"}


async def test_sqlalchemy_pgbouncer_recipe_fails_in_autocommit(postgres_server):
    """SQLAlchemy's documented recipe for PgBouncer ("Prepared Statement Name with PGBouncer":
    unique statement names, both statement caches off) still fails through PgBouncer in
    transaction mode for statements outside a transaction: asyncpg parses only unnamed
    statements again with their execution, so a named one is executed on a server connection
    that never saw it. If this fails after an upgrade, the recipe works and
    taskapi/infra/db.py's pgbouncer_arguments may follow it."""
    import uuid

    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.ext.asyncio import create_async_engine

    url = postgres_server.create_database("defect_pgbouncer")
    with running_pgbouncer(postgres_server, pool_size=2) as bouncer:
        recipe = {
            "prepared_statement_cache_size": 0,
            "statement_cache_size": 0,
            "prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4()}__",
        }
        engine = create_async_engine(
            bouncer.url(url.rsplit("/", 1)[1]), pool_size=10, connect_args=recipe
        )
        autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        errors: list[str] = []

        async def statements(i: int) -> None:
            async with autocommit.connect() as connection:
                for j in range(5):
                    try:
                        await connection.execute(text("SELECT :x + 1"), {"x": i + j})
                    except DBAPIError as error:
                        errors.append(str(error.orig))

        try:
            await asyncio.gather(*(statements(i) for i in range(20)))
        finally:
            await engine.dispose()
    assert errors and all("prepared statement" in e and "does not exist" in e for e in errors)


async def test_arq_sentinel_mode_drops_retry_and_timeouts():
    """arq's create_pool with `sentinel=True` builds redis-py's Sentinel from the database and
    credentials alone: the RedisSettings' retry (and any timeout) never reaches the primary's
    connections, so a worker on it exits at the first failover. If this fails after an
    upgrade, outage_proof_sentinel_pool in taskapi/infra/redis/worker_redis.py may go."""
    from arq.connections import RedisSettings, create_pool
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    retry = Retry(NoBackoff(), retries=7)
    with running_sentinels() as group:
        settings = RedisSettings(
            host=[("127.0.0.1", port) for port in group.sentinel_ports],
            sentinel=True,
            sentinel_master="taskapi",
            retry=retry,
            conn_timeout=3,
        )
        pool = await create_pool(settings)
        try:
            kwargs = pool.connection_pool.connection_kwargs
            assert "retry" not in kwargs and "socket_connect_timeout" not in kwargs
        finally:
            await pool.aclose()


async def test_redis_py_raises_watch_error_from_the_command_that_met_the_loss():
    """A pipeline WATCHing a key whose connection is lost raises WatchError from the command
    that met the loss (even with a retry that would try it again), not from `execute()`:
    arq's job start catches WatchError only around `execute()`, so its worker would exit. If
    this fails after an upgrade, _WatchLossTolerantPipeline in
    taskapi/infra/redis/worker_redis.py may go."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import WatchError

    with running_redis() as server:
        client = Redis.from_url(
            server.url, retry=Retry(NoBackoff(), retries=3), retry_on_error=[RedisConnectionError]
        )
        try:
            async with client.pipeline(transaction=True) as pipe:
                await pipe.watch("watched")
                server.stop()
                server.start()
                with pytest.raises(WatchError):
                    await pipe.exists("watched")
        finally:
            await client.aclose()


def test_schema_docs_pages_have_no_doctype():
    """quart-schema's Swagger UI and ReDoc pages start without `<!doctype html>`, so browsers
    render them in quirks mode. If this fails after an upgrade, taskapi/http/doc_pages.py may
    give way to the library's pages (it also keeps their scripts free of inline code)."""
    from quart_schema.extension import REDOC_TEMPLATE, SWAGGER_TEMPLATE

    for template in (REDOC_TEMPLATE, SWAGGER_TEMPLATE):
        assert not template.lstrip().lower().startswith("<!doctype html>")


def test_openapi_python_client_gives_up_on_a_model_with_an_any_of_of_required(tmp_path):
    """openapi-python-client turns an object schema with an `anyOf` of `required` alternatives
    ("at least one of these") into an untyped body (`body: Any`, no model). If this fails after
    an upgrade, TaskPatch (taskapi/blueprints/tasks/schemas.py) may say its rule with `anyOf`
    instead of `not`."""
    patch = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "status": {"type": "string"}},
        "anyOf": [{"required": ["title"]}, {"required": ["status"]}],
    }
    spec = {
        "openapi": "3.1.0",
        "info": {"title": "pin", "version": "1"},
        "paths": {
            "/t": {
                "patch": {
                    "operationId": "patch_t",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/P"}}
                        },
                    },
                    "responses": {"204": {"description": "ok"}},
                }
            }
        },
        "components": {"schemas": {"P": patch}},
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "config.yaml").write_text("package_name_override: pin\npost_hooks: []\n")
    subprocess.run(
        [
            str(Path(sys.executable).parent / "openapi-python-client"),
            "generate",
            "--path",
            str(tmp_path / "spec.json"),
            "--meta",
            "none",
            "--config",
            str(tmp_path / "config.yaml"),
            "--output-path",
            str(tmp_path / "pin"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    generated = (tmp_path / "pin" / "api" / "default" / "patch_t.py").read_text()
    assert "body: Any," in generated
    assert not (tmp_path / "pin" / "models" / "p.py").exists()

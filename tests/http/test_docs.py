"""The OpenAPI document is valid, complete and only true; the documentation pages are served
with pinned, local copies of their scripts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from taskapi.blueprints.auth.schemas import JWT_PATTERN
from taskapi.domain.pagination import CURSOR_PATTERN
from taskapi.http.docs import REDOC_VERSION, SWAGGER_UI_VERSION
from taskapi.http.idempotency import KEY_PATTERN
from taskapi.http.policy import LIMITS_ATTRIBUTE
from taskapi.http.validation import WHITESPACE, stripped_length

NOT_API = {"static", "openapi", "swagger_ui", "redoc_ui", "favicon"}
PUBLIC = {"/health", "/health/ready", "/auth/register", "/auth/login", "/auth/refresh"}


@pytest.fixture
async def spec(client) -> dict:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return await response.get_json()


def _rule_to_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


async def test_the_document_is_valid_openapi(spec):
    validate(spec)
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] == "taskapi"
    assert spec["info"]["version"]
    assert spec["info"]["description"]


async def test_every_route_is_documented_and_nothing_else(app, spec):
    documented = {(path, method.upper()) for path, item in spec["paths"].items() for method in item}
    registered = {
        (_rule_to_path(rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in NOT_API
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert documented == registered


async def test_every_operation_is_described(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            assert operation.get("summary"), where
            assert operation.get("tags"), where
            assert operation["tags"][0] in {"auth", "tasks", "jobs", "health"}, where
            successes = [s for s in operation["responses"] if s.startswith("2")]
            assert len(successes) == 1, where
            if path.startswith("/health"):
                continue
            assert "429" in operation["responses"], where
            if path not in PUBLIC or path == "/auth/refresh":
                assert operation.get("security") == [{"bearerAuth": []}], where
                assert "401" in operation["responses"], where
                assert operation["responses"]["401"]["headers"]["WWW-Authenticate"], where
            else:
                assert "security" not in operation, where


async def test_error_responses_use_the_error_envelope(spec):
    envelope = spec["components"]["schemas"]["ErrorEnvelope"]
    assert set(envelope["required"]) == {"status", "error"}
    for path, item in spec["paths"].items():
        for operation in item.values():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")) and path != "/health/ready":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}


async def test_no_content_answers_are_documented_without_a_body(spec):
    for path, method in (("/api/tasks/{task_id}", "delete"), ("/auth/logout", "post")):
        response = spec["paths"][path][method]["responses"]["204"]
        assert "content" not in response


async def test_the_bearer_scheme_is_declared(spec):
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")


async def test_docs_pages_load_pinned_local_scripts(client):
    swagger = await (await client.get("/docs")).get_data(as_text=True)
    redoc = await (await client.get("/redocs")).get_data(as_text=True)
    assert f"/static/docs/swagger-ui-{SWAGGER_UI_VERSION}/swagger-ui-bundle.js" in swagger
    assert f"/static/docs/redoc-{REDOC_VERSION}/redoc.standalone.js" in redoc
    for asset in (
        f"/static/docs/swagger-ui-{SWAGGER_UI_VERSION}/swagger-ui-bundle.js",
        f"/static/docs/swagger-ui-{SWAGGER_UI_VERSION}/swagger-ui.css",
        f"/static/docs/redoc-{REDOC_VERSION}/redoc.standalone.js",
    ):
        response = await client.get(asset)
        assert response.status_code == 200, asset
        assert len(await response.get_data()) > 10_000


async def test_options_is_an_empty_204_with_allow(client):
    response = await client.options("/api/tasks/")
    assert response.status_code == 204
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    assert await response.get_data() == b""


def _header_parameters(operation: dict) -> set[str]:
    return {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}


async def test_the_conditional_and_idempotent_headers_and_answers_are_documented(spec):
    paths = spec["paths"]
    detail, listing = paths["/api/tasks/{task_id}"], paths["/api/tasks/"]
    process = paths["/api/tasks/{task_id}/process"]
    for read in (detail["get"], listing["get"]):
        assert "If-None-Match" in _header_parameters(read)
        assert "ETag" in read["responses"]["304"]["headers"]
        assert "ETag" in read["responses"]["200"]["headers"]
    for method in ("put", "patch", "delete"):
        write = detail[method]
        assert "If-Match" in _header_parameters(write)
        for status in ("412", "428"):
            assert "ETag" in write["responses"][status]["headers"], (method, status)
    for method in ("put", "patch"):
        assert "ETag" in detail[method]["responses"]["200"]["headers"]
    for post, success in ((listing["post"], "201"), (process["post"], "202")):
        assert "Idempotency-Key" in _header_parameters(post)
        assert "Idempotent-Replayed" in post["responses"][success]["headers"]
        for status in ("400", "409", "422"):
            assert "Idempotency-Key" in post["responses"][status]["description"], status
    assert "ETag" in listing["post"]["responses"]["201"]["headers"]


async def test_docs_pages_are_standards_mode_html_with_a_favicon(client):
    for path in ("/docs", "/redocs"):
        response = await client.get(path)
        assert response.status_code == 200
        assert response.content_type == "text/html; charset=utf-8"
        page = await response.get_data(as_text=True)
        assert page.startswith("<!doctype html>\n")
        assert '<meta charset="utf-8">' in page
        assert '<link rel="icon" href="/favicon.ico">' in page
    icon = await client.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.content_type == "image/x-icon"
    assert (await icon.get_data())[:4] == b"\x00\x00\x01\x00"  # an ICO file's header


async def test_swagger_page_script_is_local_and_loads(client):
    page = await (await client.get("/docs")).get_data(as_text=True)
    assert '<script src="/static/pages/swagger-init.js"></script>' in page
    assert "SwaggerUIBundle(" not in page  # no inline script
    assert (await client.get("/static/pages/swagger-init.js")).status_code == 200


def test_the_pinned_redoc_bundle_fetches_no_logo_from_a_cdn():
    bundle = Path(__file__).resolve().parents[2] / (
        f"taskapi/static/docs/redoc-{REDOC_VERSION}/redoc.standalone.js"
    )
    assert "cdn.redoc.ly" not in bundle.read_text()


RATE_LIMIT_FIELDS = {
    "RateLimit-Policy",
    "RateLimit",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
}


async def test_every_answer_of_a_limited_operation_documents_the_rate_limit_fields(app, spec):
    """Both kinds of rate-limit field on every status of each operation with limits (the ones
    the gate counts), none on the unlimited ones; the documented patterns match what is sent."""
    limited = {
        (_rule_to_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in NOT_API
        and getattr(app.view_functions[rule.endpoint], LIMITS_ATTRIBUTE, None)
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert ("/api/tasks/", "post") in limited and ("/health", "get") not in limited
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                documented = set(response.get("headers", {})) & RATE_LIMIT_FIELDS
                expected = RATE_LIMIT_FIELDS if (path, method) in limited else set()
                assert documented == expected, (method, path, status)
    headers = spec["paths"]["/auth/me"]["get"]["responses"]["429"]["headers"]
    sent = {
        "RateLimit-Policy": '"50-per-3600s";q=50;w=3600, "200-per-86400s";q=200;w=86400',
        "RateLimit": '"50-per-3600s";r=0;t=72',
        "RateLimit-Limit": "50",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "3600",
    }
    for name, value in sent.items():
        assert re.fullmatch(headers[name]["schema"]["pattern"], value), name
    assert "Retry-After" in headers


OPERATION_IDS = {
    ("get", "/api/tasks/"): "list_tasks",
    ("post", "/api/tasks/"): "create_task",
    ("get", "/api/tasks/{task_id}"): "get_task",
    ("put", "/api/tasks/{task_id}"): "replace_task",
    ("patch", "/api/tasks/{task_id}"): "patch_task",
    ("delete", "/api/tasks/{task_id}"): "delete_task",
    ("post", "/api/tasks/{task_id}/process"): "process_task",
    ("get", "/api/tasks/process/status/{job_id}"): "get_job_status",
    ("post", "/auth/register"): "register",
    ("post", "/auth/login"): "login",
    ("post", "/auth/refresh"): "refresh",
    ("post", "/auth/logout"): "logout",
    ("get", "/auth/me"): "me",
    ("get", "/health"): "health",
    ("get", "/health/ready"): "ready",
}


async def test_operation_ids_are_the_plain_names(spec):
    found = {
        (method, path): operation["operationId"]
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    }
    assert found == OPERATION_IDS


async def test_summaries_and_descriptions_are_whole_sentences(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for text in (operation["summary"], operation.get("description", "x.")):
                assert text.rstrip().endswith("."), (method, path, text)
                assert "\n" not in operation["summary"], (method, path)


def _schemas_in(node: object) -> list[dict]:
    """Every schema object under `node` (a response, a body, a component)."""
    found = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(_schemas_in(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_schemas_in(value))
    return found


async def test_every_body_is_a_shared_component_and_the_task_status_one_enum(spec):
    components = spec["components"]["schemas"]
    for name in ("TaskEnvelope", "TaskListEnvelope", "TaskOut", "ErrorEnvelope", "TaskStatus"):
        assert name in components, name
    assert components["TaskStatus"]["enum"] == ["pending", "completed"]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            bodies = [*operation.get("requestBody", {}).get("content", {}).values()]
            for response in operation["responses"].values():
                bodies.extend(response.get("content", {}).values())
            for media in bodies:
                assert set(media["schema"]) == {"$ref"}, (method, path)
    enums = [s["enum"] for s in _schemas_in(spec) if "enum" in s]
    assert enums.count(["pending", "completed"]) == 1
    refs = {s["$ref"] for s in _schemas_in(spec) if "$ref" in s}
    assert {f"#/components/schemas/{name}" for name in components} <= refs | {
        "#/components/schemas/ErrorBody"  # referenced from ErrorEnvelope
    }


async def test_bodies_the_server_requires_are_marked_required(spec):
    paths = spec["paths"]
    for path, method in (
        ("/api/tasks/", "post"),
        ("/api/tasks/{task_id}", "put"),
        ("/api/tasks/{task_id}", "patch"),
        ("/auth/register", "post"),
        ("/auth/login", "post"),
    ):
        assert paths[path][method]["requestBody"]["required"] is True, (method, path)
    assert paths["/auth/logout"]["post"]["requestBody"]["required"] is False


async def test_the_patch_schema_says_what_the_server_refuses(spec):
    patch = spec["components"]["schemas"]["TaskPatch"]
    assert patch["minProperties"] == 1
    # not (every writable field absent): at least one of them given
    assert patch["not"] == {"properties": {name: {"not": {}} for name in patch["properties"]}}
    assert patch["properties"]["title"]["type"] == "string"  # not nullable
    assert patch["properties"]["status"] == {"$ref": "#/components/schemas/TaskStatus"}


async def test_strings_that_refuse_nul_say_so_with_a_pattern(spec):
    components = spec["components"]["schemas"]
    texts = [
        components["TaskCreate"]["properties"]["title"],
        components["TaskCreate"]["properties"]["description"]["anyOf"][0],
        components["LoginRequest"]["properties"]["username"],
        components["LoginRequest"]["properties"]["password"],
        components["RegisterRequest"]["properties"]["password"],
    ]
    for text in texts:
        assert re.search(text["pattern"], "a\u0000b") is None, text
        assert re.search(text["pattern"], "a b") is not None, text
    # the contract's "trimmed, 1-150 chars", whatever whitespace surrounds the title
    assert texts[0]["pattern"] == stripped_length(1, 150)
    assert "maxLength" not in texts[0]
    logout = components["LogoutRequest"]["properties"]["refresh_token"]["anyOf"][0]
    assert logout["pattern"] == JWT_PATTERN
    listing = {p["name"]: p for p in spec["paths"]["/api/tasks/"]["get"]["parameters"]}
    assert listing["cursor"]["schema"]["pattern"] == CURSOR_PATTERN
    process = spec["paths"]["/api/tasks/{task_id}/process"]["post"]
    key = next(p for p in process["parameters"] if p["name"] == "Idempotency-Key")
    assert key["schema"]["pattern"] == KEY_PATTERN


def test_the_whitespace_class_is_what_strip_removes():
    """The title's pattern spells out Python's whitespace: exactly the characters strip() takes."""
    spelled = re.compile(f"[{WHITESPACE}]")
    for code in range(0x110000):
        char = chr(code)
        assert bool(spelled.fullmatch(char)) == (char.strip() == ""), hex(code)


async def test_summaries_are_plain_text(spec):
    """ReDoc and Swagger UI show a summary as plain text (a heading, a search result), so
    markdown there would show its backticks; the descriptions may use it."""
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert "`" not in operation["summary"], (method, path)

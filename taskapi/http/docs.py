"""The OpenAPI document and its UIs: every status each operation can answer, its headers, the
error envelope, and the documentation pages served from pinned copies shipped in the package.

quart-schema builds the document from the routes' models; this module adds what it cannot
express (error statuses with their envelope and headers, 204 without a body, path parameter
bounds) and works around its defects (response headers placed under `content`, a 204 without a
body, documentation views that are bound methods): see tests/test_library_defects.py.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from quart import Quart
from quart_schema import Info, QuartSchema, Tag
from quart_schema.openapi import OpenAPIProvider
from werkzeug.routing import BaseConverter, Rule

from taskapi.errors import ErrorEnvelope
from taskapi.http.doc_pages import init_doc_pages
from taskapi.http.idempotency import KEY_PATTERN
from taskapi.http.policy import policy_of

F = TypeVar("F", bound=Callable[..., Any])
ERRORS_ATTRIBUTE = "_taskapi_error_statuses"
NO_CONTENT_ATTRIBUTE = "_taskapi_no_content"
HEADERS_ATTRIBUTE = "_taskapi_response_headers"
REQUEST_HEADERS_ATTRIBUTE = "_taskapi_request_headers"
NOT_MODIFIED_ATTRIBUTE = "_taskapi_not_modified"
ERROR_TEXTS_ATTRIBUTE = "_taskapi_error_texts"
BODY_REQUIRED_ATTRIBUTE = "_taskapi_body_required"

# The documentation pages' scripts, shipped in taskapi/static/docs (see `make docs-assets`).
SWAGGER_UI_VERSION = "5.35.0"
REDOC_VERSION = "2.5.4"
ASSETS = "/static/docs"
SWAGGER_JS = f"{ASSETS}/swagger-ui-{SWAGGER_UI_VERSION}/swagger-ui-bundle.js"
SWAGGER_CSS = f"{ASSETS}/swagger-ui-{SWAGGER_UI_VERSION}/swagger-ui.css"
REDOC_JS = f"{ASSETS}/redoc-{REDOC_VERSION}/redoc.standalone.js"

ERROR_TEXT: dict[int, str] = {
    400: "Malformed JSON, an empty body, JSON that is not an object, or invalid parameters.",
    401: "Missing, malformed, expired, revoked or wrongly-typed token, or bad credentials.",
    403: "Authenticated, but the task belongs to another user.",
    404: "No such task (or job).",
    409: "The username or e-mail is already registered.",
    412: "`If-Match` names no current version of the task (`precondition_failed`): nothing "
    "changed; `ETag` is the task's current one.",
    413: "The body is larger than the configured limit (default 1 MiB).",
    415: "The body is not `application/json`.",
    422: "The task fields are invalid; `error.details` names each field.",
    428: "This server requires `If-Match` on this write (`precondition_required`); `ETag` is "
    "the task's current one.",
    429: "Rate limit exceeded; retry after `Retry-After` seconds.",
    503: "A required service is unavailable: the database (with `Retry-After`), or Redis where "
    "the request needs it (an `Idempotency-Key`, rate limits set to fail closed).",
}
ERROR_HEADERS: dict[int, dict[str, str]] = {
    401: {"WWW-Authenticate": "Always `Bearer`."},
    412: {"ETag": "The task's current entity tag."},
    428: {"ETag": "The task's current entity tag."},
    429: {"Retry-After": "Seconds to wait before trying again."},
    503: {"Retry-After": "When the database is unreachable: seconds to wait before trying again."},
}
_POLICY_ITEM = r'"[0-9a-z-]+";q=[0-9]+;w=[0-9]+'
_BUDGET_ITEM = r'"[0-9a-z-]+";r=[0-9]+;t=[0-9]+'
# on every answer of a rate-limited operation that went through the rate step (all but a 503
# while the rate limits are unavailable); the figures of `taskapi/http/ratelimit_headers.py`
RATE_LIMIT_HEADERS: dict[str, dict[str, Any]] = {
    "RateLimit-Policy": {
        "description": "The operation's limits (draft-ietf-httpapi-ratelimit-headers-11), a "
        'structured-field list: `"<requests>-per-<seconds>s";q=<requests>;w=<seconds>` per '
        "limit.",
        "schema": {"type": "string", "pattern": f"^{_POLICY_ITEM}(, {_POLICY_ITEM})*$"},
    },
    "RateLimit": {
        "description": "The caller's budget under each limit (the same draft): "
        '`"<policy>";r=<requests remaining>;t=<seconds>`, `t` being the seconds until that '
        "budget is whole again; on a 429, the refusing limit alone, `r=0` and `t` its "
        "`Retry-After`.",
        "schema": {"type": "string", "pattern": f"^{_BUDGET_ITEM}(, {_BUDGET_ITEM})*$"},
    },
    "RateLimit-Limit": {
        "description": "Requests allowed by the limit with the shortest window (on a 429, the "
        "refusing limit).",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "RateLimit-Remaining": {
        "description": "Requests left under that limit.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "RateLimit-Reset": {
        "description": "Seconds until that limit's budget is whole again.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
}
ETAG_TEXT = 'The task\'s strong entity tag, `"<id>.<version>"`.'
IF_MATCH_TEXT = (
    "Write only if the task is still at this version: the `ETag` it was read with (or `*`: "
    "any version). A stale tag answers 412 and changes nothing."
)
IF_NONE_MATCH_TEXT = (
    "The `ETag`(s) of the copy the client holds (or `*`): 304 without a body when it is "
    "still current."
)


@dataclasses.dataclass(frozen=True, slots=True)
class HeaderValue:
    """A request header's description and the pattern of the values the server accepts."""

    description: str
    pattern: str


IDEMPOTENCY_KEY_TEXT = (
    "A key of the client's choosing (1-255 printable ASCII characters, bare or quoted) that "
    "makes retries safe: the first request with it runs; a retry with the same body gets its "
    "answer again (`Idempotent-Replayed: true`) for `TASKAPI_IDEMPOTENCY_TTL_SECONDS`. Per "
    "caller."
)
IDEMPOTENCY_KEY = HeaderValue(IDEMPOTENCY_KEY_TEXT, KEY_PATTERN)
_BAD_KEY = (
    "an `Idempotency-Key` that is not 1-255 printable ASCII characters (`invalid_idempotency_key`)."
)
_REUSED_KEY = "this `Idempotency-Key` was used for another request (`idempotency_key_reused`)."
IDEMPOTENT_ERRORS = {  # of a POST without a body that honours Idempotency-Key
    400: _BAD_KEY[0].upper() + _BAD_KEY[1:],
    409: "A request with this `Idempotency-Key` is still running (`idempotency_key_in_flight`): "
    "retry shortly.",
    422: _REUSED_KEY[0].upper() + _REUSED_KEY[1:],
}
PATCH_ERRORS = {
    400: "Malformed JSON, an empty body, JSON that is not an object, or an object with none of "
    "the writable fields (`empty_patch`).",
}
LOGOUT_ERRORS = {
    400: "Malformed JSON or JSON that is not an object, or a `refresh_token` that is not a "
    "refresh token of the caller's (`invalid_refresh_token`).",
}
LIST_ERRORS = {
    400: "An invalid `status`, `limit` (`invalid_limit`) or `cursor` (`invalid_cursor`).",
}
IDEMPOTENT_CREATE_ERRORS = {  # of a POST with a task's fields
    **IDEMPOTENT_ERRORS,
    400: "Malformed JSON, an empty body, JSON that is not an object, or " + _BAD_KEY,
    422: "The task fields are invalid (`error.details` names each field), or " + _REUSED_KEY,
}


def errors(*statuses: int, texts: dict[int, str] | None = None) -> Callable[[F], F]:
    """Document the error statuses an operation can answer (with the error envelope); `texts`
    replaces the usual description of some."""

    def decorator(view: F) -> F:
        setattr(view, ERRORS_ATTRIBUTE, tuple(sorted(set(statuses))))
        setattr(view, ERROR_TEXTS_ATTRIBUTE, dict(texts or {}))
        return view

    return decorator


def request_headers(**headers: str | HeaderValue) -> Callable[[F], F]:
    """Document optional request headers (name with underscores → dashes): any string, or
    a `HeaderValue`'s pattern."""

    def decorator(view: F) -> F:
        documented = dict(getattr(view, REQUEST_HEADERS_ATTRIBUTE, {}))
        documented.update({name.replace("_", "-"): text for name, text in headers.items()})
        setattr(view, REQUEST_HEADERS_ATTRIBUTE, documented)
        return view

    return decorator


def body_required(view: F) -> F:
    """Document the operation's request body as required (`requestBody.required`)."""
    setattr(view, BODY_REQUIRED_ATTRIBUTE, True)
    return view


def not_modified(view: F) -> F:
    """Document the 304 of a conditional read (If-None-Match)."""
    setattr(view, NOT_MODIFIED_ATTRIBUTE, True)
    return request_headers(If_None_Match=IF_NONE_MATCH_TEXT)(view)


# workaround: quart-schema document_response(None, 204) breaks the spec (pinned by tests/test_library_defects.py::test_schema_document_response_none_204_breaks_spec)
def empty_response(description: str) -> Callable[[F], F]:
    """Document a 204 answer: no body, no Content-Type."""

    def decorator(view: F) -> F:
        setattr(view, NO_CONTENT_ATTRIBUTE, description)
        return view

    return decorator


def response_headers(status: int, **headers: str) -> Callable[[F], F]:
    """Document headers of a success response (name with underscores → dashes)."""

    def decorator(view: F) -> F:
        documented = dict(getattr(view, HEADERS_ATTRIBUTE, {}))
        documented[status] = {name.replace("_", "-"): text for name, text in headers.items()}
        setattr(view, HEADERS_ATTRIBUTE, documented)
        return view

    return decorator


# workaround: quart-schema docs views are bound methods (pinned by tests/test_library_defects.py::test_schema_docs_views_are_bound_methods)
def plain_view(app: Any, view: Callable[..., Any]) -> Callable[..., Any]:
    """A library's view (a bound method) as a function that can carry our decorators' marks."""
    call = app.ensure_async(view)

    @functools.wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await call(*args, **kwargs)

    return wrapper


def _summary_and_description(view: Callable[..., Any]) -> tuple[str, str]:
    """The docstring's first paragraph as the summary (its lines joined), the rest as the
    description: quart-schema takes the first line alone, cutting a sentence that wraps."""
    paragraphs = (inspect.getdoc(view) or "").split("\n\n")
    summary = " ".join(paragraphs[0].split())
    return summary, "\n\n".join(p.strip() for p in paragraphs[1:] if p.strip())


def _as_component(
    model: type[Any], schema: dict[str, Any], components: dict[str, Any]
) -> dict[str, Any]:
    """`model`'s schema as the component named after it, and the `$ref` that points there."""
    if "$ref" in schema:
        return schema
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _header_parameter(name: str, header: str | HeaderValue) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if isinstance(header, HeaderValue):
        schema["pattern"] = header.pattern
    text = header.description if isinstance(header, HeaderValue) else header
    return {"name": name, "in": "header", "required": False, "description": text, "schema": schema}


def _header_objects(headers: dict[str, str]) -> dict[str, Any]:
    return {
        name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()
    }


class TaskapiOpenAPIProvider(OpenAPIProvider):
    """quart-schema's provider plus the error statuses, 204s and headers of each operation;
    every body's model a component referenced by `$ref`, each operation id the view's name."""

    def operation_id(self, method: str, path: str, func: Callable[..., Any]) -> str:
        return func.__name__  # quart-schema prefixes the method: `get_get_task`

    def build_querystring_parameters(
        self, model: type[Any]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """A query string cannot say null: a parameter that is None when absent shows the
        schema of its values, without a null alternative or default."""
        parameters, components = super().build_querystring_parameters(model)
        for parameter in parameters:
            schema = parameter["schema"]
            if "default" in schema and schema["default"] is None:
                del schema["default"]
            alternatives = [s for s in schema.get("anyOf", []) if s != {"type": "null"}]
            if len(alternatives) == 1:
                del schema["anyOf"]
                schema.update(alternatives[0])
        return parameters, components

    def build_request_body(
        self, model: type[Any], source: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        body, components = super().build_request_body(model, source)
        for media in body["content"].values():
            media["schema"] = _as_component(model, media["schema"], components)
        return body, components

    def schema(self) -> dict[str, Any]:
        spec = super().schema()
        envelope = ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in envelope.pop("$defs", {}).items():
            spec["components"]["schemas"][name] = definition
        spec["components"]["schemas"]["ErrorEnvelope"] = envelope
        return spec

    def build_path_parameter(self, name: str, converter: BaseConverter) -> dict[str, Any]:
        parameter = super().build_path_parameter(name, converter)
        maximum = getattr(converter, "documented_max", None) or getattr(converter, "max", None)
        if parameter["schema"].get("type") == "integer":
            parameter["schema"]["minimum"] = 0
            if maximum is not None:
                parameter["schema"]["maximum"] = maximum
        return parameter

    # workaround: quart-schema puts response headers under content (pinned by tests/test_library_defects.py::test_schema_puts_response_headers_under_content)
    def build_response_object(
        self, model: type[Any], headers_model: type[Any] | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        response, components = super().build_response_object(model, None)
        media = response["content"]["application/json"]
        media["schema"] = _as_component(model, media["schema"], components)
        if not response.get("description"):
            own = model.__dict__.get("__doc__")  # not pydantic's BaseModel docstring
            response["description"] = inspect.cleandoc(own) if own else "Success."
        return response, components

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        # private: OpenAPIProvider._app, the app it documents (no public accessor in quart-schema)
        view = self._app.view_functions[rule.endpoint]
        summary, description = _summary_and_description(view)
        for operations in paths.values():
            for operation in operations.values():
                operation["summary"] = summary
                operation.pop("description", None)
                if description:
                    operation["description"] = description
                if "requestBody" in operation:
                    required = getattr(view, BODY_REQUIRED_ATTRIBUTE, False)
                    operation["requestBody"] = {**operation["requestBody"], "required": required}
                responses = dict(operation["responses"])
                no_content_text = getattr(view, NO_CONTENT_ATTRIBUTE, None)
                if no_content_text is not None:
                    responses["204"] = {"description": no_content_text}
                for status, headers in getattr(view, HEADERS_ATTRIBUTE, {}).items():
                    key = status if status in responses else str(status)
                    if key in responses:
                        responses[key] = {**responses[key], "headers": _header_objects(headers)}
                if getattr(view, NOT_MODIFIED_ATTRIBUTE, False):
                    responses["304"] = {
                        "description": "Not modified: the client's copy is current (no body).",
                        "headers": _header_objects({"ETag": "The current entity tag."}),
                    }
                texts = getattr(view, ERROR_TEXTS_ATTRIBUTE, {})
                for status in getattr(view, ERRORS_ATTRIBUTE, ()):
                    response: dict[str, Any] = {
                        "description": texts.get(status, ERROR_TEXT[status]),
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ErrorEnvelope"}
                            }
                        },
                    }
                    if status in ERROR_HEADERS:
                        response["headers"] = _header_objects(ERROR_HEADERS[status])
                    responses[str(status)] = response
                if policy_of(view).limit_names:
                    for key, response in responses.items():
                        headers = {**response.get("headers", {}), **RATE_LIMIT_HEADERS}
                        responses[key] = {**response, "headers": headers}
                operation["responses"] = {str(k): v for k, v in responses.items()}
                documented = getattr(view, REQUEST_HEADERS_ATTRIBUTE, {})
                if documented:
                    operation["parameters"] = [
                        *operation.get("parameters", []),
                        *(_header_parameter(name, header) for name, header in documented.items()),
                    ]
        return paths, components


def init_docs(app: Quart, info: Info, tags: Sequence[Tag]) -> QuartSchema:
    """The OpenAPI document at /openapi.json, and our documentation pages (not quart-schema's)."""
    schema = QuartSchema(
        app,
        info=info,
        tags=list(tags),
        security_schemes={
            "bearerAuth": {"type": "http", "scheme": "bearer", "bearer_format": "JWT"}
        },
        scalar_ui_path=None,
        swagger_ui_path=None,
        redoc_ui_path=None,
        openapi_provider_class=TaskapiOpenAPIProvider,
    )
    init_doc_pages(
        app, title=info.title, swagger_js=SWAGGER_JS, swagger_css=SWAGGER_CSS, redoc_js=REDOC_JS
    )
    return schema

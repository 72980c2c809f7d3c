"""Request bodies and query strings, validated by the pydantic models that document them.

One decorator, `json_body`, answers every way a body can be wrong with the contract's status:
no bytes → 400, not JSON → 415, malformed or not an object → 400, too large → 413 (Quart's limit),
invalid fields → 422 (or 400 where the contract says so, as on /auth). It documents the model for
the OpenAPI document with quart-schema's `document_request`. Another, `query_args`, validates the
query string with a model whose every parameter declares its contract answer (`Rejected`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, StringConstraints, ValidationError
from quart import request
from quart_schema import document_querystring, document_request

from taskapi.errors import APIError
from taskapi.http.docs import body_required

M = TypeVar("M", bound=BaseModel)
VALIDATION_FAILED = "Input validation failed"


def _storable(value: str) -> str:
    """Reject text a database cannot store faithfully: lone surrogates (NUL characters are
    refused by the patterns below, which the OpenAPI document shows)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


# The characters of Python's `str.isspace()`, which `str.strip()` removes, spelled out: `\s`
# means a different set in JSON Schema's (ECMA-262), pydantic's (Rust) and Python's regexes.
WHITESPACE = r"\t-\r\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Text without NUL characters (PostgreSQL cannot store them).
NO_NUL = r"^[^\u0000]*$"
STORABLE = AfterValidator(_storable)
# Free text: no NUL characters, valid Unicode.
Text = Annotated[str, StringConstraints(pattern=NO_NUL), STORABLE]


def stripped_length(low: int, high: int) -> str:
    """Text without NUL characters whose stripped form (`str.strip()`) has `low` (at least 1)
    to `high` characters, whatever whitespace surrounds it: leading whitespace, a first and a
    last character that are not whitespace, anything between, trailing whitespace."""
    if not 1 <= low <= high:
        raise ValueError("1 <= low <= high")
    edge = f"[^\\u0000{WHITESPACE}]"
    body = edge
    if high > 1:  # then anything and a last edge character, optional when one character will do
        body += f"(?:[^\\u0000]{{{max(low - 2, 0)},{high - 2}}}{edge})" + ("?" if low == 1 else "")
    return f"^[{WHITESPACE}]*{body}[{WHITESPACE}]*$"


def is_json_request() -> bool:
    mimetype = request.mimetype
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def field_errors(error: ValidationError) -> dict[str, list[str]]:
    """pydantic's errors as the envelope's `details`: field name → problems."""
    details: dict[str, list[str]] = {}
    for item in error.errors(include_url=False, include_context=False, include_input=False):
        field = ".".join(str(part) for part in item["loc"]) or "body"
        details.setdefault(field, []).append(item["msg"])
    return details


async def parse_body(
    model: type[M], *, invalid_status: int = 422, missing_message: str | None = None
) -> M:
    raw = await request.get_data(cache=True)
    if not raw or not raw.strip():
        raise APIError(400, "Request body is empty; send a JSON object.", code="empty_body")
    if not is_json_request():
        raise APIError(415, "Content-Type must be application/json.")
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        kinds = {(e["type"], tuple(e["loc"])) for e in error.errors()}
        if any(kind == "json_invalid" for kind, _ in kinds):
            raise APIError(400, "Malformed JSON in request body.", code="malformed_json") from None
        if ("model_type", ()) in kinds or ("model_attributes_type", ()) in kinds:
            raise APIError(400, "Request body must be a JSON object.", code="bad_request") from None
        missing = any(kind == "missing" for kind, _ in kinds)
        message = missing_message if (missing and missing_message) else VALIDATION_FAILED
        code = "validation_failed" if invalid_status == 422 else "bad_request"
        raise APIError(invalid_status, message, code=code, details=field_errors(error)) from None


def json_body(
    model: type[BaseModel], *, invalid_status: int = 422, missing_message: str | None = None
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Validate the request body with `model` and pass it to the view as `data`."""

    def decorator(view: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            data = await parse_body(
                model, invalid_status=invalid_status, missing_message=missing_message
            )
            return await view(*args, data=data, **kwargs)

        return body_required(document_request(model)(wrapper))

    return decorator


@dataclasses.dataclass(frozen=True, slots=True)
class Rejected:
    """Marks a query parameter (in its `Annotated[...]`): any invalid value of it is answered 400
    with this message and code (by default the status's own)."""

    message: str
    code: str | None = None


def _rejections(model: type[BaseModel]) -> dict[str, Rejected]:
    """Each parameter's `Rejected`; TypeError, at import, for a parameter without one (or for a
    model-level validator, whose error would name no parameter)."""
    if model.__pydantic_decorators__.model_validators:
        raise TypeError(f"{model.__name__}: a query model validates its parameters one by one")
    found: dict[str, Rejected] = {}
    for name, field in model.model_fields.items():
        marks = [mark for mark in field.metadata if isinstance(mark, Rejected)]
        if len(marks) != 1:
            raise TypeError(f"{model.__name__}.{name} needs exactly one Rejected(...) annotation")
        found[name] = marks[0]
    return found


def query_args(
    model: type[BaseModel],
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Validate the query string with `model` and pass it to the view as `query`. The first value
    of a repeated key counts; the first invalid parameter (in the model's order) is answered."""
    rejections = _rejections(model)

    def decorator(view: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                query = model.model_validate(request.args.to_dict())
            except ValidationError as error:
                rejected = rejections[str(error.errors()[0]["loc"][0])]
                raise APIError(400, rejected.message, code=rejected.code) from None
            return await view(*args, query=query, **kwargs)

        return document_querystring(model)(wrapper)

    return decorator

"""JSON responses encoded once, with orjson, in the contract's envelopes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from quart import Response

JSON = "application/json"


def dumps(payload: Any) -> bytes:
    """Encode like the API does everywhere: compact, UTF-8, datetimes as ISO 8601."""
    return orjson.dumps(payload)


def encoded_json(json: bytes) -> orjson.Fragment:
    """JSON already encoded (by a model's serializer), to embed as is in an envelope."""
    return orjson.Fragment(json)


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(dumps(payload), status=status, headers=dict(headers or {}), content_type=JSON)


def success(
    data: Any,
    status: int = 200,
    *,
    meta: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"status": "success", "data": data}
    if meta is not None:
        body["meta"] = meta
    return json_response(body, status, headers)


def no_content() -> Response:
    return Response(b"", status=204)


def options_as_204(response: Response) -> None:
    """Quart answers OPTIONS with an empty 200 `text/html`; the contract's empty answer is 204."""
    if response.status_code == 200 and "Allow" in response.headers:
        response.status_code = 204
        response.headers.pop("Content-Type", None)

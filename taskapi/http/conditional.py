"""Conditional requests (RFC 9110 §13): If-None-Match on reads (304 Not Modified), If-Match on
the writes of a task (checked by the statement that writes, `taskapi.domain.tasks`)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from quart import Response, request
from werkzeug.http import parse_etags, unquote_etag

from taskapi.domain.tasks import ANY_VERSION, REQUIRED_BUT_MISSING, Precondition
from taskapi.http.state import current_parts

# what a 304 leaves out of the 200 it stands for: the body and what describes it
_NOT_IN_304 = frozenset({"content-length", "content-type"})
_MAX_VERSION_DIGITS = 10  # the version column is a 32-bit integer


def weak_etag(body: bytes) -> str:
    """A weak entity tag of a representation: a digest of its bytes."""
    return f'W/"{hashlib.blake2b(body, digest_size=16).hexdigest()}"'


def request_header(name: str) -> str | None:
    """A list-valued request header, its lines joined (None: not sent)."""
    values = request.headers.getlist(name)
    return ", ".join(values) if values else None


def if_none_match_hits(header: str | None, etag: str | None) -> bool:
    """Whether If-None-Match names the ETag a read would be answered with (RFC 9110's weak
    comparison; `*` matches any current representation)."""
    if not header or not etag:
        return False
    tag, _weak = unquote_etag(etag)
    return parse_etags(header).contains_weak(tag)


def read_not_modified(etag: str | None) -> bool:
    """Whether this request's If-None-Match makes its 200 with `etag` a 304."""
    return if_none_match_hits(request_header("If-None-Match"), etag)


def not_modified_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers of a 304 standing for a 200 with these headers."""
    return {k: v for k, v in headers.items() if k.lower() not in _NOT_IN_304}


def not_modified(headers: Mapping[str, str]) -> Response:
    """The 304 standing for a (cached) 200 with these headers."""
    response = Response(b"", status=304, headers=not_modified_headers(headers))
    for name in _NOT_IN_304:
        response.headers.pop(name, None)
    return response


def as_not_modified(response: Response) -> None:
    """Turn a 200 into the 304 that stands for it: its validators and headers, no body."""
    response.status_code = 304
    response.set_data(b"")
    for name in _NOT_IN_304:
        response.headers.pop(name, None)


def write_precondition(task_id: int) -> Precondition | None:
    """This request's If-Match on the task `task_id` (None: unconditional). An entity tag that
    is weak, malformed or another task's names no version of this one: the write answers 412."""
    header = request_header("If-Match")
    if header is None:
        required = current_parts().settings.require_if_match
        return REQUIRED_BUT_MISSING if required else None
    etags = parse_etags(header)
    if etags.star_tag:
        return ANY_VERSION
    versions = set()
    for tag in etags.as_set(include_weak=False):
        # workaround: werkzeug parse_etags yields None for an empty tag (pinned by tests/test_library_defects.py::test_werkzeug_parse_etags_yields_none_for_an_empty_tag)
        if not isinstance(tag, str):
            continue
        task, dot, version = tag.partition(".")
        if dot and _digits(task) and _digits(version) and int(task) == task_id:
            versions.add(int(version))
    return Precondition(frozenset(versions))


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= _MAX_VERSION_DIGITS

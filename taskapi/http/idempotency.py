"""The Idempotency-Key request header (draft-ietf-httpapi-idempotency-key-header) on the POSTs
that honour it (`http.policy.idempotent`): the key's syntax, the claim a request makes, and the
answer to a request whose key another request holds. The gate makes the claim in its step and
settles it once the view has answered."""

from __future__ import annotations

import re

from quart import Response, request

from taskapi.domain import idempotency
from taskapi.errors import APIError
from taskapi.infra import metrics
from taskapi.infra.stores import Claimed, IdempotencyClaim

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255


# A key: bare (printable ASCII, no surrounding space, not starting with a quote) or a Structured
# Field string (RFC 8941: quoted, `\"` and `\\` its only escapes); 1 to 255 characters either way.
_KEY = re.compile(r'[!#-~](?:[ -~]{0,253}[!-~])?|"(?:[ !#-\[\]-~]|\\["\\]){1,255}"')
KEY_PATTERN = rf"^(?:{_KEY.pattern})$"  # the OpenAPI document's, for the header's value
_ESCAPE = re.compile(r"\\(.)")


def _key(values: list[str]) -> str:
    """The one key sent (surrounding spaces and tabs aside), unquoted; 400 otherwise."""
    if len(values) != 1:
        raise _bad_key("Send one Idempotency-Key header.")
    value = values[0].strip(" \t")
    if not _KEY.fullmatch(value):
        raise _bad_key(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters, bare or "
            'quoted (escaping only " and \\).'
        )
    return _ESCAPE.sub(r"\1", value[1:-1]) if value.startswith('"') else value


def _bad_key(message: str) -> APIError:
    return APIError(400, message, code="invalid_idempotency_key")


async def claim_of(user_id: int, in_flight_seconds: int) -> IdempotencyClaim | None:
    """The claim this request makes (None: it sends no key); 400 for a malformed key."""
    values = request.headers.getlist(HEADER)
    if not values:
        return None
    key = _key(values)
    operation = f"{request.endpoint}:{sorted((request.view_args or {}).items())}"
    body = await request.get_data(cache=True, as_text=False, parse_form_data=False)
    fingerprint = idempotency.fingerprint(operation, body)
    return idempotency.claim_for(user_id, key, fingerprint, in_flight_seconds)


def answer_to_retry(claim: IdempotencyClaim, claimed: Claimed) -> Response:
    """A request whose key another request holds: that request's answer replayed when it is
    the same request and has answered; 409 while it runs; 422 when it was another request."""
    if claimed.fingerprint != claim.fingerprint:
        raise APIError(
            422,
            "This Idempotency-Key was used for another request (another body or operation).",
            code="idempotency_key_reused",
        )
    entry = claimed.entry
    if entry is None:
        raise APIError(
            409,
            "A request with this Idempotency-Key is still being processed: retry shortly.",
            code="idempotency_key_in_flight",
        )
    response = Response(entry.body, status=entry.status, headers=entry.headers)
    response.headers[REPLAYED] = "true"
    metrics.idempotent_replay()
    return response

"""Schemathesis hooks for fuzzing taskapi (loaded by tests/http/schemathesis.toml): each one
keeps a schema-valid (positive) case valid where the server refuses it for a reason no schema
can state, so that a refusal of the case still means the document is wrong.

- A generated Idempotency-Key repeats across cases (the coverage phase sends the same few
  values), and a key sent again with another body is rightly 422 `idempotency_key_reused`:
  each valid key is made fresh (a new UUID: a key lives for a day, across runs).
- `format: email` is any RFC 5321 mailbox; registration takes the deliverable ones that
  email-validator accepts (no special-use domain such as `.test`, a top-level domain ending in
  a letter): another address stands in for one it refuses.
- A password on the list of the 10,000 most common ones is refused (400): another stands in.

Negative cases are sent as generated: changing one would make Schemathesis revalidate it as a
positive one, putting back a header it had left out on purpose.
"""

from __future__ import annotations

import itertools
import re
import uuid
from typing import Any

import schemathesis
from pydantic import EmailStr, TypeAdapter, ValidationError

from taskapi.domain.password_policy import COMMON_PASSWORDS
from taskapi.http.idempotency import HEADER, KEY_PATTERN

_VALID_KEY = re.compile(KEY_PATTERN)
_EMAIL = TypeAdapter(EmailStr)
_fresh = itertools.count(1)


def _deliverable(email: str) -> bool:
    try:
        _EMAIL.validate_python(email)
    except ValidationError:
        return False
    return True


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.meta is None or case.meta.generation.mode.is_negative:
        return
    key = (case.headers or {}).get(HEADER)
    if isinstance(key, str) and _VALID_KEY.fullmatch(key):
        case.headers[HEADER] = f"fuzz-{uuid.uuid4()}"  # fresh across runs too
    body = case.body
    if case.operation.label == "POST /auth/register" and isinstance(body, dict):
        if isinstance(body.get("email"), str) and not _deliverable(body["email"]):
            body["email"] = f"fuzz-{next(_fresh)}@example.com"
        if isinstance(body.get("password"), str) and body["password"].lower() in COMMON_PASSWORDS:
            body["password"] = f"fuzz-password-{next(_fresh)}"

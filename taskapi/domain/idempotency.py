"""Idempotency keys (draft-ietf-httpapi-idempotency-key-header) policy: the store key a
caller's key lives under (keys are per caller), a request's fingerprint, and which answers are
kept for the retries. The stores (`taskapi.domain.ports`) claim and keep atomically."""

from __future__ import annotations

import hashlib
import secrets

from taskapi.infra.stores import IdempotencyClaim

PREFIX = "taskapi:idem:"


def fingerprint(operation: str, body: bytes) -> str:
    """What makes two requests with one key the same request: the operation (endpoint and its
    path values) and the body's bytes."""
    digest = hashlib.sha256(operation.encode())
    digest.update(b"\n")
    digest.update(body)
    return digest.hexdigest()


def claim_for(user_id: int, key: str, fingerprint: str, in_flight_seconds: int) -> IdempotencyClaim:
    """A new claim of `key` by the user `user_id` for a request of this fingerprint."""
    return IdempotencyClaim(
        f"{PREFIX}u{user_id}:{key}", fingerprint, secrets.token_hex(16), in_flight_seconds * 1000
    )


def kept(status: int) -> bool:
    """Whether an answer is kept for the retries: not a server's failure (5xx), which a retry
    should run again."""
    return status < 500

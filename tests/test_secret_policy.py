"""The JWT secret rule: generated values pass, made-up, copied and well-known ones are refused."""

from __future__ import annotations

import base64
import hashlib
import random
import string

import pytest

from taskapi.secret_policy import (
    ESTIMATED_LENGTH,
    MIN_RANDOM_SHARE,
    PLACEHOLDER_MARKERS,
    committed_secrets,
    random_share,
    secret_weakness,
)
from tests.committed_secrets import committed_secret_values

EXAMPLE = "CHANGE-ME-to-at-least-32-random-characters"  # config/*.env.example
NOT_RANDOM = "is not random"
COMMITTED = "appears in a file of the repository"
DIGEST = "is a well-known digest"


def _generated(kind: str, size: int, seed: int) -> str:
    """What secrets.token_hex/token_urlsafe (or base64 of random bytes) give, from a seeded
    generator so that every run checks the same values."""
    data = random.Random(f"{kind}-{size}-{seed}").randbytes(size)
    if kind == "hex":
        return data.hex()
    if kind == "urlsafe":
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("secret", "refusal"),
    [
        ("abcdefghij" * 4, NOT_RANDOM),  # a repeat
        ("0123456789abcdef" * 2, NOT_RANDOM),  # a sequence, repeated
        ("a" * 40 + "bcdefghijklmnop", NOT_RANDOM),
        ("ab" * 40, NOT_RANDOM),
        ("AcmeCorpTaskApiProductionKey2024!", NOT_RANDOM),  # words and a year
        ("correct horse battery staple mountain", NOT_RANDOM),  # a passphrase
        ("ThisIsMyVeryLongAndSecureJwtSigningKey", NOT_RANDOM),
        ("qwertyuiopasdfghjklzxcvbnm1234567890", NOT_RANDOM),  # keyboard walks
        ("1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik,9ol.", NOT_RANDOM),
        ("zxcvbnm,./asdfghjkl;'qwertyuiop[]", NOT_RANDOM),
        ("P@ssw0rd2024!P@ssw0rd2024!P@ssw0rd2024!", NOT_RANDOM),  # l33t, repeated
        ("purple-monkey-dishwasher-elephant-42", NOT_RANDOM),
        (hashlib.sha256(b"").hexdigest(), DIGEST),  # the well-known e3b0c442…b855
        (hashlib.sha256(b"").hexdigest().upper(), DIGEST),
        (base64.b64encode(hashlib.sha256(b"").digest()).decode(), DIGEST),
        (hashlib.md5(b"password").hexdigest(), DIGEST),
        (hashlib.sha1(b"letmein").hexdigest(), DIGEST),
        (hashlib.sha512(b"taskapi").hexdigest(), DIGEST),
        (EXAMPLE, "looks like a placeholder (it contains 'change-me')"),
        ("CHANGE-M3-to-at-least-32-random-characters", COMMITTED),  # a one-character variant
        ("my-own-jwt-SECRET-9f8e7d6c5b4a3210", "looks like a placeholder (it contains 'secret')"),
        ("ChangeMe" + _generated("hex", 16, 0), "looks like a placeholder"),
        ("", "is empty"),
        ("short", "is too short: 5 characters of its alphabet hold 30 bits"),
        (_generated("urlsafe", 15, 0), "is too short: 20 characters"),  # 120 bits
        (_generated("hex", 15, 0), "is too short: 30 characters"),
    ],
)
def test_a_value_that_is_not_a_generated_secret_is_refused(secret, refusal):
    weakness = secret_weakness(secret)
    assert weakness is not None, secret
    assert refusal in weakness, weakness


@pytest.mark.parametrize(
    ("kind", "size", "count"),
    [
        ("hex", 16, 200),  # secrets.token_hex(16): 128 bits, the least that passes
        ("urlsafe", 16, 1000),  # secrets.token_urlsafe(16): 128 bits
        ("urlsafe", 24, 50),
        ("urlsafe", 32, 50),
        ("urlsafe", 48, 20),  # what the refusals advise
        ("hex", 32, 20),
        ("base64", 32, 20),  # openssl rand -base64 32
    ],
)
def test_generated_secrets_pass(kind, size, count):
    refused = {}
    for seed in range(count):
        secret = _generated(kind, size, seed)
        weakness = secret_weakness(secret)
        if weakness is not None:
            refused[secret] = weakness
    assert refused == {}


def _one_character_variants(value: str) -> set[str]:
    """Every value one substitution, deletion or insertion away from `value`."""
    alphabet = string.ascii_letters + string.digits + "-_"
    variants = {value[:i] + value[i + 1 :] for i in range(len(value))}
    for i in range(len(value) + 1):
        variants |= {value[:i] + c + value[i:] for c in alphabet}
        if i < len(value):
            variants |= {value[:i] + c + value[i + 1 :] for c in alphabet}
    variants.discard(value)
    return variants


@pytest.mark.parametrize("committed", committed_secrets())
def test_every_committed_value_and_its_one_character_variants_are_refused(committed):
    assert secret_weakness(committed) is not None
    variants = _one_character_variants(committed)
    assert len(variants) > 3000
    escaped = {}
    for variant in variants:
        weakness = secret_weakness(variant)
        placeholder = any(marker in variant.lower() for marker in PLACEHOLDER_MARKERS)
        if weakness is None or (not placeholder and COMMITTED not in weakness):
            escaped[variant] = weakness
    assert escaped == {}


def test_a_committed_value_inside_a_longer_secret_does_not_count_as_random():
    committed = "1Q4OAqx3tCMB76N7rL5FUW2XKouQG4rLI-L1QftFFpA"  # tests/data/*.env.example
    assert committed in committed_secrets()
    weakness = secret_weakness(committed + _generated("urlsafe", 4, 0))
    assert weakness is not None and (COMMITTED in weakness or NOT_RANDOM in weakness)


def test_the_packaged_list_holds_exactly_the_values_the_repository_commits():
    """taskapi/config/committed_secrets.txt ships the committed values to installed copies:
    a secret added to (or removed from) an example, toml, README or test-data file must be
    added to (or removed from) that list too."""
    in_repository = committed_secret_values()
    packaged = set(committed_secrets())
    assert not in_repository - packaged, f"add to the list: {sorted(in_repository - packaged)}"
    assert not packaged - in_repository, f"no longer committed: {sorted(packaged - in_repository)}"
    assert EXAMPLE in packaged


def test_only_the_first_characters_are_estimated():
    """zxcvbn's matching grows with the square of the length: a longer secret is judged by its
    start, so a weak start is refused however random the rest."""
    random_start = _generated("urlsafe", 75, 0)
    assert len(random_start) == ESTIMATED_LENGTH
    assert secret_weakness(random_start + "a" * 10_000) is None
    weakness = secret_weakness("a" * ESTIMATED_LENGTH + _generated("urlsafe", 48, 0))
    assert weakness is not None and NOT_RANDOM in weakness


def test_the_random_share_separates_generated_from_made_up_values():
    """The figure behind the rule: generated tokens keep most of their room, made-up values
    little of it, so the threshold sits between the two with room on both sides."""
    generated = [random_share(_generated("urlsafe", 16, seed)) for seed in range(200)]
    made_up = [
        random_share(text)
        for text in (
            "AcmeCorpTaskApiProductionKey2024!",
            "correct horse battery staple mountain",
            "the quick brown fox jumps over the lazy dog",
        )
    ]
    assert min(generated) > MIN_RANDOM_SHARE + 0.05
    assert max(made_up) < MIN_RANDOM_SHARE


def test_an_unreadable_list_of_committed_values_refuses_every_secret(monkeypatch, tmp_path):
    import taskapi.secret_policy as policy

    monkeypatch.setattr(policy, "COMMITTED_SECRETS", tmp_path / "missing.txt")
    committed_secrets.cache_clear()
    try:
        weakness = secret_weakness(_generated("urlsafe", 32, 0))
    finally:
        committed_secrets.cache_clear()
    assert weakness == (
        f"cannot be compared with the committed values: {tmp_path / 'missing.txt'} is unreadable"
    )

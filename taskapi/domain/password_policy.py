"""Passwords an account may not have: the most common ones, in any case."""

from __future__ import annotations

from pathlib import Path


def _common_passwords() -> frozenset[str]:
    """The bundled list of the 10,000 most common passwords (from zxcvbn's), read once."""
    text = Path(__file__).with_name("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


# Read at import, off the event loop; a registration costs one set lookup.
COMMON_PASSWORDS = _common_passwords()


def refuse_common(password: str) -> str:
    """Refuse a password that is on the common list, in any case."""
    if password.lower() in COMMON_PASSWORDS:
        raise ValueError("is one of the most common passwords; choose another")
    return password

"""Look-alike names for the canonical-form tests, spelt out so that no test hides a confusable
character in its source."""

from __future__ import annotations


def fullwidth(text: str) -> str:
    """`text` with each printable ASCII character (but the space) in its full-width form."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)

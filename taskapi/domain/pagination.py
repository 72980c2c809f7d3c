"""Keyset cursors over (created_at DESC, id DESC), written as `<microseconds>.<id>`: the last
row's creation instant in microseconds since 1970-01-01 UTC and its id."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
# Every text of this form is a cursor: 17 digits of microseconds stay within year 5138, 9 of
# id below the 32-bit columns' largest.
_TOKEN = re.compile(r"([0-9]{1,17})\.([0-9]{1,9})")
# The query parameter: a token, or empty (the first page).
CURSOR_PATTERN = rf"^(?:{_TOKEN.pattern})?$"


@dataclasses.dataclass(frozen=True, slots=True)
class Cursor:
    """The last row of a page: the next page starts strictly after it."""

    created_at: dt.datetime
    id: int

    def encode(self) -> str:
        created_at = self.created_at
        if created_at.tzinfo is None:  # SQLite's naive times are UTC
            created_at = created_at.replace(tzinfo=dt.UTC)
        return f"{(created_at - EPOCH) // _MICROSECOND}.{self.id}"

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """The cursor a token of `encode` holds; ValueError for any other text."""
        match = _TOKEN.fullmatch(token)
        if match is None:
            raise ValueError("not a cursor of this API")
        micros, row_id = match.groups()
        return cls(created_at=EPOCH + int(micros) * _MICROSECOND, id=int(row_id))

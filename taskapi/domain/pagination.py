"""Opaque keyset cursors over (created_at DESC, id DESC)."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt

import orjson

from taskapi.domain.models import MAX_ID

MAX_CURSOR_LENGTH = 200


@dataclasses.dataclass(frozen=True, slots=True)
class Cursor:
    """The last row of a page: the next page starts strictly after it."""

    created_at: dt.datetime
    id: int

    def encode(self) -> str:
        raw = orjson.dumps([self.created_at.isoformat(), self.id])
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """The cursor a token of `encode` holds; ValueError for any other text."""
        try:
            if len(token) > MAX_CURSOR_LENGTH:
                raise ValueError("too long")
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            stamp, row_id = orjson.loads(raw)
            created_at = dt.datetime.fromisoformat(stamp)
            if (
                created_at.tzinfo is None
                or not isinstance(row_id, int)
                or not 0 <= row_id <= MAX_ID
            ):
                raise ValueError("bad cursor")
            # an offset can carry the instant past year 1 or 9999: OverflowError here, not in
            # the database driver
            created_at = created_at.astimezone(dt.UTC)
        except (ValueError, TypeError, OverflowError, binascii.Error, orjson.JSONDecodeError):
            raise ValueError("not a cursor of this API") from None
        return cls(created_at=created_at, id=row_id)

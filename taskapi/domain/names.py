"""The one canonical form of a username or an e-mail address, for lookups, limits and
uniqueness: Unicode NFKC (full-width and compatibility characters become their plain forms),
then case folding, then NFKC again (folding can undo normal form), so `ÜMLAUT` and a
full-width `user` meet their look-alikes; `İnfo` keeps its dot (an `i` and a combining dot),
so it is not `info`."""

from __future__ import annotations

import unicodedata


def canonical(text: str) -> str:
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())

"""Response-cache policy: where a caller's read of the task resource is cached, and which
versions a write makes stale. Keys carry the caller's scope (`u<id>` or `admin`), the request's
origin and full query string, and a version read first: `v:t:<task>` for a task's detail,
`v:o:<owner>` for an owner's lists, `v:all` for the admin's lists. A write bumps the versions it
could affect, so every process stops using the old entries at once; nothing is scanned or
cleared."""

from __future__ import annotations

from typing import Literal

from taskapi.domain.viewer import Viewer
from taskapi.infra.stores import CacheSlot
from taskapi.settings import Settings

Kind = Literal["list", "detail"]
# The cached answers' format, in every entry's key: a process never serves another format's
# entries (format 2: tasks carry their version, answers their ETag).
FORMAT = 2


class CachePolicy:
    """The cache's settings: on or off, and how long each kind of answer is kept."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.cache_enabled
        self.ttl = {"list": settings.cache_list_ttl, "detail": settings.cache_detail_ttl}

    def slot(
        self, kind: Kind, viewer: Viewer, task_id: int | None, origin: str, query: str
    ) -> CacheSlot | None:
        """Where this viewer's `list` or `detail` read is cached (None: caching is off)."""
        if not self.enabled:
            return None
        scope = "admin" if viewer.is_admin else f"u{viewer.id}"
        if kind == "detail":
            version_key = f"v:t:{task_id}"
        else:
            version_key = "v:all" if viewer.is_admin else f"v:o:{viewer.id}"
        prefix = f"{kind}{FORMAT}:{task_id or ''}:{scope}:"
        return CacheSlot(prefix, f":{origin}:{query}", version_key, self.ttl[kind])

    def task_versions(self, task_id: int, owner_id: int) -> list[str]:
        """The versions a write to this task changes: its detail, and its owner's and the
        admin's lists (none when caching is off)."""
        if not self.enabled:
            return []
        return [f"v:t:{task_id}", *self.owner_versions(owner_id)]

    def owner_versions(self, owner_id: int) -> list[str]:
        """The versions of an owner's lists and the admin's (none when caching is off)."""
        return [f"v:o:{owner_id}", "v:all"] if self.enabled else []

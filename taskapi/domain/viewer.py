"""Who is asking: the authenticated caller of a request, as the services see it."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class Viewer:
    id: int
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

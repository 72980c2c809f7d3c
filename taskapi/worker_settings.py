"""The arq worker's settings. A stub until the background jobs land."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar


class WorkerSettings:
    """`arq worker.WorkerSettings`: no job functions yet."""

    functions: ClassVar[list[Callable[..., Any]]] = []

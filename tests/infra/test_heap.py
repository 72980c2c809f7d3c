"""The API process settles its heap after start-up (taskapi.infra.heap): what start-up made is
frozen out of the collector's walks, and collections run at the module's thresholds."""

from __future__ import annotations

import os
import subprocess
import sys

from taskapi.infra.heap import THRESHOLDS
from taskapi.settings import PROJECT_ROOT

REPORT = "import gc; print(gc.get_freeze_count(), *gc.get_threshold())"


def collector_after(code: str) -> tuple[int, ...]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKAPI_", "DATABASE_URL"))}
    result = subprocess.run(
        [sys.executable, "-c", f"{code}\n{REPORT}"],
        cwd=PROJECT_ROOT,
        env={**env, "REDIS_URL": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return tuple(int(x) for x in result.stdout.split()[-4:])


def test_the_asgi_entry_point_freezes_start_up_and_sets_the_thresholds():
    frozen, *thresholds = collector_after("import taskapi.asgi")
    assert frozen > 10_000  # the app's modules and objects: tens of thousands
    assert tuple(thresholds) == THRESHOLDS


def test_a_process_that_does_not_settle_keeps_the_defaults():
    """The check above can fail: a plain interpreter has nothing frozen, CPython's thresholds."""
    frozen, *thresholds = collector_after("import taskapi.app")
    assert frozen == 0
    assert tuple(thresholds) == (700, 10, 10)  # CPython 3.11's

"""The API process raises its own open-file limit: a soft limit of 1,024 (systemd's default,
and many shells') would refuse connections long before the counts production holds open."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from taskapi.settings import PROJECT_ROOT

LOW = 256
SOFT_AND_HARD = "import resource; print(*resource.getrlimit(resource.RLIMIT_NOFILE))"


def low_soft_limit() -> None:
    """In the child before exec: a low soft limit under the inherited hard one."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW, hard))


def limits_after(code: str) -> tuple[int, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKAPI_", "DATABASE_URL"))}
    result = subprocess.run(
        [sys.executable, "-c", f"{code}\n{SOFT_AND_HARD}"],
        cwd=PROJECT_ROOT,
        env={**env, "REDIS_URL": ""},
        preexec_fn=low_soft_limit,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    soft, hard = result.stdout.split()[-2:]
    return int(soft), int(hard)


@pytest.fixture(autouse=True)
def _a_hard_limit_above_the_low_one() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard <= LOW:
        pytest.skip(f"the hard open-file limit here ({hard}) is not one to raise the soft to")


def test_the_soft_limit_is_raised_to_the_hard_one():
    soft, hard = limits_after(
        "from taskapi.infra.open_files import raise_open_file_limit; raise_open_file_limit()"
    )
    assert soft == hard > LOW


def test_the_low_limit_is_what_a_process_has_without_it():
    """The check above can fail: the child really starts with the low soft limit."""
    assert limits_after("")[0] == LOW


def test_the_asgi_entry_point_raises_it_before_serving():
    soft, hard = limits_after("import taskapi.asgi")
    assert soft == hard > LOW

"""stubs/ types the libraries that ship no types of their own (aiocache, quart-jwt-extended) for
mypy: each name and signature there must be one the installed library has."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

from taskapi.settings import PROJECT_ROOT

UNTYPED_LIBRARIES = ("aiocache", "quart_jwt_extended")


def test_the_stubs_match_the_installed_libraries():
    stubtest = [sys.executable, "-m", "mypy.stubtest", "--ignore-missing-stub", "--concise"]
    result = subprocess.run(
        [*stubtest, *UNTYPED_LIBRARIES],
        cwd=PROJECT_ROOT,
        env={**os.environ, "MYPYPATH": str(PROJECT_ROOT / "stubs")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_stubbed_library_is_one_without_types():
    """A library that starts shipping its own types (py.typed) no longer needs our stubs."""
    for name in UNTYPED_LIBRARIES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.submodule_search_locations
        package = next(iter(spec.submodule_search_locations))
        assert not os.path.exists(os.path.join(package, "py.typed")), name
    assert sorted(os.listdir(PROJECT_ROOT / "stubs")) == sorted(UNTYPED_LIBRARIES)

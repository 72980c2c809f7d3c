"""The Makefile's targets as a user runs them: every `make` call is quiet about the docs'
versions, `make docs-assets` fetches exactly the versions the docs pages pin, and `make install`
and `make run` install the runtime lock alone while the dev targets add the dev lock."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from taskapi.http.docs import REDOC_VERSION, SWAGGER_UI_VERSION
from taskapi.settings import PROJECT_ROOT

RUNTIME_INSTALL = "--require-hashes -r requirements.lock"
DEV_INSTALL = "--require-hashes -r requirements-dev.lock"
DEV_TARGETS = ["test", "fuzz", "bench", "bench-scale", "mutate", "lint", "lock"]


def _dry_run(target: str, *args: str, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess[str]:
    if shutil.which("make") is None:
        pytest.fail("make is not installed")
    return subprocess.run(
        ["make", "-n", target, *args], cwd=cwd, capture_output=True, text=True, check=True
    )


def pip_install_commands(target: str, *args: str, cwd: Path = PROJECT_ROOT) -> list[str]:
    """The `pip install` commands that `make -n target args` prints."""
    lines = _dry_run(target, *args, cwd=cwd).stdout.splitlines()
    return [line for line in lines if " -m pip install " in line]


def test_docs_assets_fetches_the_pinned_versions():
    commands = _dry_run("docs-assets").stdout
    assert f"swagger-ui-dist@{SWAGGER_UI_VERSION} redoc@{REDOC_VERSION}" in commands
    assert f"taskapi/static/docs/swagger-ui-{SWAGGER_UI_VERSION}" in commands


@pytest.mark.parametrize("target", ["lint", "docs-assets"])
def test_make_prints_no_errors_of_its_own(target):
    assert _dry_run(target).stderr == ""


@pytest.mark.parametrize("target", ["install", "run"])
def test_install_and_run_install_the_runtime_lock_alone(target):
    """What the systemd path (`make install`) and `make run` install: hash-checked runtime pins,
    then the project without its dependencies (nothing unpinned)."""
    # -B: every stamp out of date, as on a fresh clone
    commands = pip_install_commands(target, "-B")
    assert len(commands) == 2, commands
    assert commands[0].endswith(RUNTIME_INSTALL)
    assert commands[1].endswith("--no-deps --no-build-isolation -e .")
    assert not any("requirements-dev" in c or "[dev]" in c for c in commands), commands


@pytest.mark.parametrize("target", DEV_TARGETS)
def test_the_dev_targets_add_the_dev_lock(target):
    commands = pip_install_commands(target, "-B")
    assert [c for c in commands if c.endswith(DEV_INSTALL)], commands
    assert commands[0].endswith(RUNTIME_INSTALL), commands


def _checkout_with_stamps(root: Path, *stamps: str) -> Path:
    """The Makefile and the files its stamps depend on, copied, and a .venv with `stamps`
    made in that order, each newer than the files and than the one before."""
    for name in ("Makefile", "pyproject.toml", "requirements.lock", "requirements-dev.lock"):
        shutil.copy2(PROJECT_ROOT / name, root / name)
        os.utime(root / name, (1_000_000, 1_000_000))
    (root / ".venv").mkdir()
    for n, stamp in enumerate(stamps, start=1):
        (root / ".venv" / stamp).touch()
        os.utime(root / ".venv" / stamp, (1_000_000 + n, 1_000_000 + n))
    return root


def test_neither_command_reinstalls_after_the_other(tmp_path):
    """`make run` after `make test` leaves the dev packages alone and installs nothing, and
    `make test` after both installs nothing either: each stamp stays current."""
    root = _checkout_with_stamps(tmp_path, ".installed-runtime", ".installed-dev")
    assert pip_install_commands("run", cwd=root) == []
    assert pip_install_commands("test", cwd=root) == []


def test_a_new_dev_lock_reinstalls_the_dev_lock_alone(tmp_path):
    root = _checkout_with_stamps(tmp_path, ".installed-runtime", ".installed-dev")
    os.utime(root / "requirements-dev.lock", (1_000_010, 1_000_010))
    assert pip_install_commands("run", cwd=root) == []
    (command,) = pip_install_commands("test", cwd=root)
    assert command.endswith(DEV_INSTALL)


def test_the_dev_lock_goes_on_top_of_an_installed_runtime_lock(tmp_path):
    """A fresh `make run`, then `make test`: the dev lock is added, the runtime pins stay."""
    root = _checkout_with_stamps(tmp_path, ".installed-runtime")
    (command,) = pip_install_commands("test", cwd=root)
    assert command.endswith(DEV_INSTALL)

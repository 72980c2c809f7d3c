"""The Makefile's targets as a user runs them: every `make` call is quiet about the docs'
versions, and `make docs-assets` fetches exactly the versions the docs pages pin."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from taskapi.http.docs import REDOC_VERSION, SWAGGER_UI_VERSION
from taskapi.settings import PROJECT_ROOT


def _dry_run(target: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("make") is None:
        pytest.fail("make is not installed")
    return subprocess.run(
        ["make", "-n", target], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )


def test_docs_assets_fetches_the_pinned_versions():
    commands = _dry_run("docs-assets").stdout
    assert f"swagger-ui-dist@{SWAGGER_UI_VERSION} redoc@{REDOC_VERSION}" in commands
    assert f"taskapi/static/docs/swagger-ui-{SWAGGER_UI_VERSION}" in commands


@pytest.mark.parametrize("target", ["lint", "docs-assets"])
def test_make_prints_no_errors_of_its_own(target):
    assert _dry_run(target).stderr == ""

"""The secret values the repository's files commit, found the way an operator would copy them:
assignments to TASKAPI_JWT_SECRET_KEY or jwt_secret_key in any tracked file but Python code."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from taskapi.secret_policy import COMMITTED_SECRETS
from taskapi.settings import PROJECT_ROOT

_ASSIGNMENTS = (
    re.compile(r"TASKAPI_JWT_SECRET_KEY:-(?!\$)([^}\"'\s]+)"),  # ${TASKAPI_JWT_SECRET_KEY:-x}
    re.compile(r"TASKAPI_JWT_SECRET_KEY=[\"']?([^\s\"'}$][^\s\"'}]*)"),  # KEY=x, KEY="x"
    re.compile(r"jwt_secret_key\s*=\s*[\"']([^\"']+)[\"']"),  # toml
)


def tracked_files() -> list[Path]:
    """The repository's tracked files (a checkout without git: the files that carry secrets)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=False
    )
    if listed.returncode == 0:
        return [PROJECT_ROOT / p for p in listed.stdout.decode().split("\0") if p]
    patterns = ("config/**/*", "taskapi/config/*", "tests/data/*", "docs/*", "*.md", "bench/*")
    return [path for pattern in patterns for path in PROJECT_ROOT.glob(pattern)]


def committed_secret_values() -> set[str]:
    """Every value a tracked non-Python file gives the JWT secret (the packaged list aside)."""
    values: set[str] = set()
    for path in tracked_files():
        if path.suffix == ".py" or path == COMMITTED_SECRETS or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for pattern in _ASSIGNMENTS:
            values.update(pattern.findall(text))
    return values

"""The Containerfile and compose file stay in step with what CI installs and runs (no engine
runs here, so their contents are checked against the tested commands)."""

from __future__ import annotations

import re
import shutil

import yaml

from taskapi.settings import PROJECT_ROOT

CONTAINERFILE = (PROJECT_ROOT / "Containerfile").read_text()
COMPOSE = yaml.safe_load((PROJECT_ROOT / "config/compose.yaml").read_text())


def test_the_image_installs_like_make_does():
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert "-m pip install --quiet --disable-pip-version-check -c requirements.lock -e" in makefile
    assert "-m pip install -c requirements.lock -e ." in CONTAINERFILE


def test_the_image_runs_as_a_non_root_user_with_a_healthcheck():
    final_stage = CONTAINERFILE.rsplit("\nFROM ", 1)[1]
    assert re.search(r"^USER taskapi$", final_stage, re.M)
    assert "HEALTHCHECK" in final_stage and "/health" in final_stage
    assert "pytest" not in final_stage and "[dev]" not in CONTAINERFILE


def test_compose_has_every_part_with_health_gated_start():
    services = COMPOSE["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker", "nginx"}
    assert services["migrate"]["command"] == ["taskapi", "db", "upgrade"]
    assert services["worker"]["command"] == ["arq", "worker.WorkerSettings"]
    api_needs = services["api"]["depends_on"]
    assert api_needs["migrate"]["condition"] == "service_completed_successfully"
    assert api_needs["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert set(COMPOSE["volumes"]) == {"pgdata", "redisdata"}


def test_the_commands_the_images_run_exist_in_the_tested_install():
    venv_bin = PROJECT_ROOT / ".venv" / "bin"
    for command in ("taskapi", "arq", "hypercorn"):
        assert (venv_bin / command).exists() or shutil.which(command), command
    for path in ("config/hypercorn.toml", "config/nginx/taskapi.conf", "asgi.py", "worker.py"):
        assert (PROJECT_ROOT / path).is_file(), path

"""The Containerfile and compose file stay in step with what CI installs and runs (no engine
runs here, so their contents are checked against the tested commands), and no secret can
enter the image."""

from __future__ import annotations

import fnmatch
import json
import posixpath
import re
import shlex
import shutil

import yaml

from taskapi.settings import PROJECT_ROOT
from tests.test_makefile import pip_install_commands
from tests.unit_filters import SYSTEM_CALL_GROUP

CONTAINERFILE = (PROJECT_ROOT / "Containerfile").read_text()
COMPOSE = yaml.safe_load((PROJECT_ROOT / "config/compose.yaml").read_text())
SECRET_NAMES = ("*.env", "*.pem", "*.key")
# Every unit's sandbox: what the API unit had, plus the system call filter, no W+X memory and
# a /proc without other users' processes.
UNIT_HARDENING = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "ProtectProc=invisible",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "MemoryDenyWriteExecute=yes",
    "SystemCallArchitectures=native",
    f"SystemCallFilter={SYSTEM_CALL_GROUP}",
    "CapabilityBoundingSet=",
    "UMask=0077",
)
# What the image may copy from the build context: the files it reads, none of them a secret.
# Not config/ itself: the README has operators keep compose.env and certs/privkey.pem there.
ALLOWED_COPY_SOURCES = {
    "pyproject.toml",
    "requirements.lock",
    "README.md",
    "asgi.py",
    "worker.py",
    "taskapi",
}
SECRETS_AN_OPERATOR_MAY_HAVE = (
    "config/compose.env",
    "config/certs/privkey.pem",
    "config/certs/fullchain.pem",
    "config/systemd/taskapi.env",
    "some/dir/x.key",
    "deploy.pem",
    ".env",
    "taskapi/.env.local",
)


def _ignore_rules(path: str) -> list[tuple[bool, re.Pattern[str]]]:
    """An ignore file as (is_exception, regex), read and compiled as moby's patternmatcher
    (used by docker, podman and buildah) does: a bare `*.env` matches only at the root."""
    rules = []
    for line in (PROJECT_ROOT / path).read_text().splitlines():
        pattern = line.strip()
        if not pattern or line.startswith("#"):
            continue
        exception = pattern.startswith("!")
        pattern = posixpath.normpath(pattern.lstrip("!").strip()).lstrip("/")
        regex, i = "", 0
        while i < len(pattern):
            char = pattern[i]
            if pattern.startswith("**", i):
                i += 3 if pattern.startswith("**/", i) else 2
                regex += ".*" if i >= len(pattern) else "(.*/)?"
                continue
            if char == "*":
                regex += "[^/]*"
            elif char == "?":
                regex += "[^/]"
            elif char == "\\" and i + 1 < len(pattern):
                i += 1
                regex += re.escape(pattern[i])
            elif char in ".+()|{}$":
                regex += "\\" + char
            else:
                regex += char
            i += 1
        rules.append((exception, re.compile(f"^{regex}$")))
    return rules


def _ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the build context leaves `path` out: the last rule matching it or one of its
    parent directories decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for exception, regex in rules:
        if exception == ignored and any(regex.match(c) for c in candidates):
            ignored = not exception
    return ignored


def _copy_sources() -> list[str]:
    """The build-context paths the Containerfile's COPY and ADD instructions name."""
    sources = []
    for instruction in re.sub(r"\\\n", " ", CONTAINERFILE).splitlines():
        words = instruction.split(None, 1)
        if len(words) < 2 or words[0].upper() not in ("COPY", "ADD"):
            continue
        rest = words[1].strip()
        args = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        if any(a.startswith("--from") for a in args):
            continue
        paths = [a for a in args if not a.startswith("--")]
        sources += [posixpath.normpath(a) for a in paths[:-1]]
    return sources


def _run_commands() -> list[str]:
    """The shell commands of the Containerfile's RUN instructions, split at each `&&`."""
    commands = []
    for instruction in re.sub(r"\\\n", " ", CONTAINERFILE).splitlines():
        words = instruction.split(None, 1)
        if len(words) == 2 and words[0].upper() == "RUN":
            commands += [command.strip() for command in words[1].split("&&")]
    return commands


def test_the_image_installs_with_the_commands_of_make_install():
    """The image's pip commands are those `make install` runs on a fresh clone, given the image's
    virtualenv: the runtime lock, hash-checked, then the project without its dependencies."""
    make_install = pip_install_commands("install", "-B", "VENV=/opt/venv")
    assert make_install[0].endswith("--require-hashes -r requirements.lock"), make_install
    image = [command for command in _run_commands() if " -m pip install " in command]
    assert image == make_install


def test_the_image_runs_as_a_non_root_user_with_a_healthcheck():
    final_stage = CONTAINERFILE.rsplit("\nFROM ", 1)[1]
    assert re.search(r"^USER taskapi$", final_stage, re.M)
    assert "HEALTHCHECK" in final_stage and "/health" in final_stage
    assert "pytest" not in final_stage and "[dev]" not in CONTAINERFILE
    assert "requirements-dev" not in CONTAINERFILE


def test_compose_has_every_part_with_health_gated_start():
    services = COMPOSE["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker", "nginx"}
    assert services["migrate"]["command"] == ["taskapi", "db", "upgrade"]
    assert services["worker"]["command"] == [
        "arq",
        "worker.WorkerSettings",
        "--custom-log-dict",
        "worker.LOG_CONFIG",
    ]
    api_needs = services["api"]["depends_on"]
    assert api_needs["migrate"]["condition"] == "service_completed_successfully"
    assert api_needs["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert set(COMPOSE["volumes"]) == {"pgdata", "redisdata"}


def test_the_commands_the_images_run_exist_in_the_tested_install():
    venv_bin = PROJECT_ROOT / ".venv" / "bin"
    for command in ("taskapi", "arq", "hypercorn"):
        assert (venv_bin / command).exists() or shutil.which(command), command
    files = ("taskapi/config/hypercorn.toml", "config/nginx/taskapi.conf", "asgi.py", "worker.py")
    for path in files:
        assert (PROJECT_ROOT / path).is_file(), path


def test_the_ignore_file_keeps_secrets_out_of_the_build_context():
    rules = _ignore_rules(".containerignore")
    leaked = [p for p in SECRETS_AN_OPERATOR_MAY_HAVE if not _ignored(p, rules)]
    assert not leaked, f"these would enter the build context: {leaked}"
    for junk in (
        ".git/config",
        ".venv/bin/python",
        "instance/taskapi.db",
        "x/__pycache__/a.pyc",
    ):
        assert _ignored(junk, rules), junk


def test_the_ignore_file_keeps_what_the_image_copies():
    rules = _ignore_rules(".containerignore")
    for source in ALLOWED_COPY_SOURCES:
        root = PROJECT_ROOT / source
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in (p for p in files if "__pycache__" not in p.parts):
            relative = path.relative_to(PROJECT_ROOT).as_posix()
            assert not _ignored(relative, rules), relative


def test_docker_reads_the_same_ignore_file_as_podman():
    docker = (PROJECT_ROOT / ".dockerignore").read_text()
    assert docker == (PROJECT_ROOT / ".containerignore").read_text()


def test_the_image_copies_only_allowed_sources_that_hold_no_secrets():
    sources = _copy_sources()
    assert "taskapi" in sources and not any(source.startswith("config") for source in sources)
    assert set(sources) <= ALLOWED_COPY_SOURCES, set(sources) - ALLOWED_COPY_SOURCES
    for source in sources:
        root = PROJECT_ROOT / source
        assert root.exists(), source
        for path in [root, *root.rglob("*")]:
            assert not any(fnmatch.fnmatch(path.name, name) for name in SECRET_NAMES), path


def test_compose_fills_in_every_placeholder_of_the_nginx_site():
    """The nginx image runs envsubst over its templates with the variables matching
    NGINX_ENVSUBST_FILTER that are set: each of the site's placeholders must be one of them."""
    nginx = COMPOSE["services"]["nginx"]
    site = (PROJECT_ROOT / "config/nginx/taskapi.conf").read_text()
    placeholders = set(re.findall(r"\$\{(TASKAPI_[A-Z_]+)\}", site))
    environment = nginx["environment"]
    selected = {
        name for name in environment if re.search(environment["NGINX_ENVSUBST_FILTER"], name)
    }
    assert placeholders and placeholders <= selected, placeholders - selected
    assert any(
        v.endswith("/etc/nginx/templates/default.conf.template:ro") for v in nginx["volumes"]
    )


def test_every_systemd_unit_has_the_whole_sandbox():
    units = sorted((PROJECT_ROOT / "config/systemd").glob("*.service"))
    assert len(units) == 3
    for unit in units:
        service = unit.read_text().split("[Service]", 1)[1].split("\n[", 1)[0]
        lines = {line.strip() for line in service.splitlines()}
        missing = [setting for setting in UNIT_HARDENING if setting not in lines]
        assert not missing, (unit.name, missing)


def test_every_base_image_is_pinned_by_digest():
    """A tag can be moved under us; a digest names one image. Both stages share the base: the
    runtime stage runs the virtualenv (and its compiled extensions) the build stage made."""
    bases = re.findall(r"^FROM\s+(\S+)", CONTAINERFILE, re.M)
    assert len(bases) == 2
    for base in bases:
        assert re.fullmatch(r"[a-z0-9./_-]+:[\w.-]+@sha256:[0-9a-f]{64}", base), base
    assert len(set(bases)) == 1, bases


def test_the_api_is_given_open_files_for_thousands_of_connections():
    """The unit and the compose service set the hard limit the API raises its soft one to
    (taskapi.infra.open_files); systemd's and the runtimes' soft default is 1,024."""
    unit = (PROJECT_ROOT / "config/systemd/taskapi@.service").read_text()
    service = unit.split("[Service]", 1)[1].split("\n[", 1)[0]
    (value,) = re.findall(r"^LimitNOFILE=(\d+)$", service, re.M)
    assert int(value) >= 65536
    nofile = COMPOSE["services"]["api"]["ulimits"]["nofile"]
    assert nofile["soft"] == nofile["hard"] >= 65536

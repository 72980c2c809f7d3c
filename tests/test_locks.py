"""The two lock files: production installs the runtime pins alone, every pin is checked against
its hashes, the dev lock is the runtime lock plus the dev extra at the same versions, and the
runtime lock holds everything the project needs to be built and to run."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from dataclasses import dataclass

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from taskapi.settings import PROJECT_ROOT

RUNTIME_LOCK = "requirements.lock"
DEV_LOCK = "requirements-dev.lock"
PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
DEV_EXTRA = PYPROJECT["project"]["optional-dependencies"]["dev"]
BUILD_REQUIRES = PYPROJECT["build-system"]["requires"]
HASH = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Pin:
    requirement: Requirement
    hashes: frozenset[str]

    @property
    def exact(self) -> bool:
        return [s.operator for s in self.requirement.specifier] == ["=="]

    @property
    def version(self) -> Version:
        assert self.exact, self.requirement
        (specifier,) = self.requirement.specifier
        return Version(specifier.version)

    def described(self) -> str:
        return f"{self.requirement} ({len(self.hashes)} hashes)"

    def applies_here(self) -> bool:
        marker = self.requirement.marker
        return marker is None or marker.evaluate()


def read_lock(name: str) -> dict[NormalizedName, Pin]:
    """A pip requirements file as uv writes it, by package: `name==version ; marker \\` and its
    `--hash=` lines; any other option fails the read."""
    text = (PROJECT_ROOT / name).read_text()
    pins = {}
    for entry in re.sub(r"\\\n", " ", text).splitlines():
        entry = entry.split(" #", 1)[0].strip()
        if not entry or entry.startswith("#"):
            continue
        spec, *options = re.split(r"\s+(?=--)", entry)
        hashes = {option.removeprefix("--hash=") for option in options}
        assert len(hashes) == len(options) and all(HASH.fullmatch(h) for h in hashes), entry
        requirement = Requirement(spec)
        assert canonicalize_name(requirement.name) not in pins, f"{name}: pinned twice: {entry}"
        pins[canonicalize_name(requirement.name)] = Pin(requirement, frozenset(hashes))
    return pins


def names(requirements: list[str]) -> set[NormalizedName]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def test_the_runtime_lock_holds_none_of_the_dev_extra():
    """`make install`, the systemd path and the image install this file: no test tools in it
    (setuptools is there as the build requirement, not as the wheel test's)."""
    dev_only = names(DEV_EXTRA) - names(BUILD_REQUIRES)
    assert {"pytest", "ruff", "schemathesis", "mutmut", "py-spy"} <= dev_only
    leaked = sorted(dev_only & read_lock(RUNTIME_LOCK).keys())
    assert not leaked, f"the runtime lock installs the dev extra's {leaked}"


def test_every_pin_of_both_locks_has_a_hash():
    for lock in (RUNTIME_LOCK, DEV_LOCK):
        pins = read_lock(lock)
        assert pins, lock
        unhashed = sorted(name for name, pin in pins.items() if not pin.hashes)
        assert not unhashed, f"{lock}: no hash for {unhashed}"
        inexact = sorted(str(pin.requirement) for pin in pins.values() if not pin.exact)
        assert not inexact, f"{lock}: not one version: {inexact}"


def test_the_dev_lock_is_the_runtime_lock_plus_the_dev_extra():
    """Tests run on the versions production runs: each runtime pin is in the dev lock as it is,
    same version, marker and hashes."""
    runtime, dev = read_lock(RUNTIME_LOCK), read_lock(DEV_LOCK)
    differ = {
        name: (pin.described(), dev[name].described() if name in dev else None)
        for name, pin in runtime.items()
        if dev.get(name) != pin
    }
    assert not differ, f"runtime pin, dev pin: {differ}"
    assert names(DEV_EXTRA) <= dev.keys(), names(DEV_EXTRA) - dev.keys()


def test_the_runtime_lock_has_all_the_project_needs_to_build_and_run():
    """From pyproject's dependencies and build requirements through each pinned package's own
    (read from its installed metadata, extras included), on this interpreter: each requirement
    is pinned, at a version it accepts."""
    runtime = read_lock(RUNTIME_LOCK)
    pending = [(Requirement(r), "pyproject.toml") for r in PYPROJECT["project"]["dependencies"]]
    pending += [(Requirement(r), "[build-system]") for r in BUILD_REQUIRES]
    walked: set[tuple[NormalizedName, frozenset[str]]] = set()
    problems = []
    while pending:
        requirement, wanted_by = pending.pop()
        name = canonicalize_name(requirement.name)
        pin = runtime.get(name)
        if pin is None or not pin.applies_here():
            problems.append(f"{wanted_by} needs {requirement}: not pinned")
            continue
        if not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{wanted_by} needs {requirement}: pinned {pin.version}")
        if (name, frozenset(requirement.extras)) in walked:
            continue
        walked.add((name, frozenset(requirement.extras)))
        installed = importlib.metadata.distribution(name)
        assert Version(installed.version) == pin.version, (name, installed.version)
        extras = {"", *requirement.extras}
        for line in installed.requires or []:
            needed = Requirement(line)
            marker = needed.marker
            if marker is None or any(marker.evaluate({"extra": extra}) for extra in extras):
                pending.append((needed, f"{name} {pin.version}"))
    assert not problems, sorted(set(problems))

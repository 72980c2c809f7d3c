"""The README stands alone: every file of this repository it links, embeds or names is committed.

A chart embedded from a git-ignored directory exists on the machine that drew it and nowhere
else; a fresh clone shows a broken image. So each path must be tracked by git, not only exist."""

from __future__ import annotations

import re
import subprocess

from taskapi.settings import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"

# Markdown links and images: ](target), relative targets only.
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
# A code span that looks like a path into the repository: `dir/file` or `dir/`.
CODE_PATH = re.compile(r"`((?:\./)?[A-Za-z0-9_.@-]+/[A-Za-z0-9_./@-]*)`")
# Paths the README tells the user they will create or that a run writes.
MADE_BY_THE_USER = ("instance/", "mutants/", "config/compose.env", "config/certs/")


def tracked(path: str) -> bool:
    found = subprocess.run(
        ["git", "ls-files", "--", path],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return bool(found.stdout.strip())


def top_levels() -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    return {line.split("/", 1)[0] for line in listed.stdout.splitlines() if "/" in line}


def test_every_linked_or_embedded_file_is_committed() -> None:
    targets = [t for t in LINK.findall(README.read_text()) if not re.match(r"[a-z]+:", t)]
    assert targets, "the README links no file: the pattern is wrong"
    missing = [t for t in targets if not tracked(t)]
    assert not missing, f"the README links files a fresh clone does not have: {missing}"


def test_every_repository_path_it_names_is_committed() -> None:
    tops = top_levels()
    named = {
        p.removeprefix("./")
        for p in CODE_PATH.findall(README.read_text())
        if p.removeprefix("./").split("/", 1)[0] in tops
    }
    assert len(named) > 10, "the README names few paths: the pattern is wrong"
    missing = sorted(
        p for p in named if not p.startswith(MADE_BY_THE_USER) and not tracked(p.rstrip("/"))
    )
    assert not missing, f"the README names paths a fresh clone does not have: {missing}"

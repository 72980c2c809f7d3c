"""`make mutate`: mutmut over the given modules, then the kill rate and the surviving mutants.

    python -m mutation.run [--workers N] taskapi/domain/tasks.py taskapi/domain/jobs.py ...

Every run starts afresh (mutants/ is removed first) so that the figure is the current code's.
mutmut's own settings (the test selection, the files its copy of the tree needs) are in
pyproject.toml under [tool.mutmut]; this script adds the modules and one PostgreSQL server
shared by every mutant's tests (mutation/shared_postgres.py). A timed-out mutant counts as
killed (the change made the tests hang); a mutant that no selected test reaches survives.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import ModuleType

import libcst as cst

ROOT = Path(__file__).resolve().parent.parent
KILLED = {"killed", "timeout"}
UNTESTED = "not checked"  # a run stopped early


def load_test_services() -> ModuleType:
    """tests/services.py under another name: the `tests` package itself must be imported by
    the mutants' sessions from the copy in mutants/, not from here."""
    spec = importlib.util.spec_from_file_location("_mutate_services", ROOT / "tests/services.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # for its dataclasses
    spec.loader.exec_module(module)
    return module


def run_mutmut(modules: list[str], workers: int) -> None:
    from mutmut.__main__ import _run
    from mutmut.configuration import config

    settings = config()
    settings.only_mutate = modules
    settings.pytest_add_cli_args = [*settings.pytest_add_cli_args, "-p", "mutation.shared_postgres"]
    _run((), max_children=workers)


def stop_listed_servers(pid_list: Path) -> None:
    """Stop the Redis servers of sessions that were killed before their own teardown (a server
    is told by its working directory, which Redis sets to its --dir), and remove their files."""
    if not pid_list.exists():
        return
    for line in pid_list.read_text().splitlines():
        pid, _, directory = line.partition(" ")
        with contextlib.suppress(OSError):  # gone already
            if os.readlink(f"/proc/{pid}/cwd").removesuffix(" (deleted)") == directory:
                os.kill(int(pid), signal.SIGKILL)
        shutil.rmtree(directory, ignore_errors=True)


def def_line(path: Path, function: str, class_name: str | None) -> int:
    """The line of `def function` (in `class_name`, when given) in the source file."""
    tree = ast.parse(path.read_text())
    body = tree.body
    if class_name is not None:
        classes = (n for n in tree.body if isinstance(n, ast.ClassDef))
        body = next(n.body for n in classes if n.name == class_name)
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
            return node.lineno
    raise LookupError(f"{function} not found in {path}")


def describe(mutant: str, path: str) -> tuple[int, list[str]]:
    """(line in the source file, the changed lines as -/+) of one mutant."""
    from mutmut.mutation.diff_apply import read_functions_from_index
    from mutmut.utils.format_utils import orig_function_and_class_names_from_key

    functions = read_functions_from_index(mutant, path)
    if functions is None:
        return 0, ["(no diff: mutmut's index of the mutated file is missing)"]
    before, after = (cst.Module([f]).code.strip().split("\n") for f in functions)
    function, class_name = orig_function_and_class_names_from_key(mutant)
    first_def = next(
        i for i, line in enumerate(before) if line.lstrip().startswith(("def ", "async def "))
    )
    changed: list[str] = []
    first_changed = None
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    for tag, a1, a2, b1, b2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        first_changed = a1 if first_changed is None else first_changed
        changed += [f"- {line.strip()}" for line in before[a1:a2]]
        changed += [f"+ {line.strip()}" for line in after[b1:b2]]
    offset = (first_changed or first_def) - first_def
    return def_line(ROOT / path, function, class_name) + offset, changed


def report(modules: list[str], seconds: float) -> str:
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.stats import status_by_exit_code

    lines: list[str] = []
    survivors: list[str] = []
    total = Counter[str]()
    unchecked = 0
    for module in modules:
        data = SourceFileMutationData(path=module)
        data.load()
        statuses = Counter(status_by_exit_code[code] for code in data.exit_code_by_key.values())
        unchecked += statuses.pop(UNTESTED, 0)
        total.update(statuses)
        count, killed = sum(statuses.values()), sum(statuses[s] for s in KILLED)
        rate = f"{100 * killed / count:5.1f} %" if count else "    -  "
        others = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()) if s != "killed")
        lines.append(f"  {module:32} {killed:4}/{count:<4} killed  {rate}   {others}")
        for mutant, code in sorted(data.exit_code_by_key.items()):
            status = status_by_exit_code[code]
            if status in KILLED or status == UNTESTED:
                continue
            line, changed = describe(mutant, module)
            survivors.append(f"{module}:{line}  [{status}]  {mutant.rpartition('.')[2]}")
            survivors += [f"      {c}" for c in changed]
    count, killed = sum(total.values()), sum(total[s] for s in KILLED)
    rate = 100 * killed / count if count else 0.0
    minutes, rest = divmod(round(seconds), 60)
    head = [
        "",
        f"Mutation testing: {count} mutants in {len(modules)} modules"
        + (f", {minutes} min {rest} s" if seconds else ""),
        *lines,
        *([f"Not tested (the run stopped early): {unchecked} mutants"] if unchecked else []),
        f"Kill rate: {killed}/{count} = {rate:.1f} % (of them timed out: {total['timeout']})",
        f"Surviving mutants ({count - killed}):" if count > killed else "No surviving mutants.",
    ]
    return "\n".join(head + survivors) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "modules", nargs="+", help="source files to mutate, e.g. taskapi/domain/jobs.py"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--report-only", action="store_true", help="print the report of the last run, run nothing"
    )
    args = parser.parse_args()
    os.chdir(ROOT)
    missing = [m for m in args.modules if not Path(m).is_file()]
    if missing:
        print(f"mutate: no such module: {' '.join(missing)} (MUTATE_MODULES)", file=sys.stderr)
        return 2
    if args.report_only:
        if not Path("mutants").is_dir():
            print("mutate: no earlier run to report (run `make mutate` first)", file=sys.stderr)
            return 1
        print(report(args.modules, 0.0), end="")
        return 0
    shutil.rmtree("mutants", ignore_errors=True)
    services = load_test_services()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="taskapi-mutate-") as run_dir:
        pid_list = Path(run_dir) / "server-pids"
        with services.running_postgres() as postgres:
            os.environ["TASKAPI_MUTATE_PG_PORT"] = str(postgres.port)
            os.environ["TASKAPI_MUTATE_PG_BINDIR"] = str(postgres.bindir)
            os.environ["TASKAPI_MUTATE_PID_LIST"] = str(pid_list)
            try:
                run_mutmut(args.modules, args.workers)
            except SystemExit as stop:
                if stop.code not in (0, None):
                    print("mutate: mutmut stopped before testing every mutant", file=sys.stderr)
                    return int(stop.code) if isinstance(stop.code, int) else 1
            finally:
                stop_listed_servers(pid_list)
    text = report(args.modules, time.monotonic() - started)
    Path("mutants/report.txt").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Schemathesis, every check, against a running taskapi: `tests/http/test_openapi_fuzz.py`
serves one for it, and `make fuzz FUZZ_URL=...` points it at yours (README, "Fuzzing").

    python -m tests.http.fuzz --base http://127.0.0.1:5000 --username fuzzer --password ...

The account (registered first when it does not exist yet) should be a dedicated one: the
fuzzer creates, changes and deletes its tasks. Three runs: every operation with its access
token but /auth/refresh (its refresh token's) and /auth/logout, which revokes the token the
others need and so runs last. The exceptions to the checks are in schemathesis.toml.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from taskapi.settings import PROJECT_ROOT

BIN = Path(sys.executable).parent
CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = 20261124


def call(base: str, method: str, path: str, body: dict | None = None, token: str = "") -> dict:
    """One JSON request; its decoded answer (urllib's HTTPError for a 4xx or 5xx)."""
    request = urllib.request.Request(
        base + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {token}"} if token else {}),
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def tokens_for(base: str, username: str, password: str) -> dict:
    """The account's token pair, registering it first if it does not exist yet; three tasks of
    its own, so that generated ids can hit."""
    account = {"username": username, "email": f"{username}@example.com", "password": password}
    try:
        call(base, "POST", "/auth/register", account)
    except urllib.error.HTTPError as error:
        if error.code != 409:
            raise
    tokens = call(base, "POST", "/auth/login", {"username": username, "password": password})
    for i in range(3):
        call(base, "POST", "/api/tasks/", {"title": f"seed {i}"}, tokens["access_token"])
    return tokens


def schemathesis_runs(base: str, tokens: dict, examples: int, seed: int) -> list[list[str]]:
    """The three command lines, every check on, positive and negative data."""
    common = [
        str(BIN / "schemathesis"),
        "--config-file",
        str(CONFIG),
        "--no-color",
        "run",
        f"{base}/openapi.json",
        "--checks",
        "all",
        "--mode",
        "all",
        "--max-examples",
        str(examples),
        "--seed",
        str(seed),
        "--request-timeout",
        "10",
        "--workers",  # hypothesis describing its strategies from several threads fails
        "1",
    ]
    access = ["--header", f"Authorization: Bearer {tokens['access_token']}"]
    refresh = ["--header", f"Authorization: Bearer {tokens['refresh_token']}"]
    return [
        [*common, *access, "--exclude-path", "/auth/logout", "--exclude-path", "/auth/refresh"],
        [*common, *refresh, "--include-path", "/auth/refresh"],
        [*common, *access, "--include-path", "/auth/logout"],
    ]


def run(base: str, tokens: dict, examples: int, seed: int = SEED) -> list[str]:
    """Each run's output that failed (empty: all passed)."""
    failed = []
    for command in schemathesis_runs(base, tokens, examples, seed):
        result = subprocess.run(
            command,
            cwd=PROJECT_ROOT,  # schemathesis.toml names its hooks file from here
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        if result.returncode != 0:
            failed.append(result.stdout[-8000:] + result.stderr[-2000:])
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="e.g. http://127.0.0.1:5000")
    parser.add_argument("--username", default="fuzzer")
    parser.add_argument("--password", required=True)
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    tokens = tokens_for(args.base.rstrip("/"), args.username, args.password)
    failed = run(args.base.rstrip("/"), tokens, args.examples, args.seed)
    for output in failed:
        print(output)
    print("schemathesis: " + ("failures above" if failed else "no failure"))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

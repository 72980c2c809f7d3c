"""A client generated from the served document with openapi-python-client (offline, into a
temporary directory) runs the whole flow against a real server and a real arq worker: every
answer parses into the generated models, and the generated signatures require what the
server requires."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.http import fuzz
from tests.http.conftest import server_environment
from tests.test_worker_settings import ARQ_WORKER

BIN = Path(sys.executable).parent
PACKAGE = "taskapi_client"
# no post-generation hooks: the default ones run ruff over the output, which nothing here needs
GENERATOR_CONFIG = f"package_name_override: {PACKAGE}\npost_hooks: []\n"
JOB_DEADLINE_SECONDS = 30


@pytest.fixture
def generated(served_api, tmp_path) -> Iterator[ModuleType]:
    """The client package generated from the server's /openapi.json, importable."""
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(fuzz.call(served_api, "GET", "/openapi.json")))
    config = tmp_path / "generator.yaml"
    config.write_text(GENERATOR_CONFIG)
    output = tmp_path / "client"
    subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(spec),
            "--meta",
            "none",
            "--config",
            str(config),
            "--output-path",
            str(output / PACKAGE),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    sys.path.insert(0, str(output))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(output))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


@pytest.fixture
def worker(served_api, shared_settings, redis_server, tmp_path) -> Iterator[None]:
    """A real arq worker on the served app's database and Redis (it relays the outbox)."""
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        ARQ_WORKER,
        cwd=Path(__file__).parents[2],
        env=server_environment(shared_settings.database_url, redis_server.url),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _operations(client: ModuleType) -> dict[str, Any]:
    """operation id → its generated module (api/<tag>/<operation id>.py)."""
    found = {}
    for tag in ("auth", "tasks", "jobs", "health"):
        package = importlib.import_module(f"{PACKAGE}.api.{tag}")
        for path in Path(package.__file__).parent.glob("*.py"):
            if path.stem != "__init__":
                found[path.stem] = importlib.import_module(f"{PACKAGE}.api.{tag}.{path.stem}")
    return found


def _parsed(response: Any, status: int, model: type) -> Any:
    """The answer's parsed body, after checking its status and the model it parsed into."""
    assert response.status_code == status, (response.status_code, response.content)
    assert isinstance(response.parsed, model), (type(response.parsed), response.content)
    return response.parsed


def test_the_generated_signatures_require_what_the_server_requires(served_api, generated):
    spec = fuzz.call(served_api, "GET", "/openapi.json")
    operations = _operations(generated)
    ids = {op["operationId"] for item in spec["paths"].values() for op in item.values()}
    assert set(operations) == ids
    for item in spec["paths"].values():
        for operation in item.values():
            function = operations[operation["operationId"]].sync_detailed
            parameters = inspect.signature(function).parameters
            required = {p["name"] for p in operation.get("parameters", []) if p.get("required")}
            if operation.get("requestBody", {}).get("required"):
                required.add("body")
            for name, parameter in parameters.items():
                if name == "client":
                    continue
                must = name in required
                has_default = parameter.default is not inspect.Parameter.empty
                assert must != has_default, (operation["operationId"], name)
            if "requestBody" in operation and "body" not in required:
                assert parameters["body"].default is generated.types.UNSET


def test_the_whole_flow_with_the_generated_client(served_api, generated, worker):
    api = _operations(generated)
    models = importlib.import_module(f"{PACKAGE}.models")
    anonymous = generated.Client(base_url=served_api, raise_on_unexpected_status=True)

    account = models.RegisterRequest(
        username="client", email="client@example.com", password="generated-client-pw"
    )
    registered = _parsed(
        api["register"].sync_detailed(client=anonymous, body=account), 201, models.RegisterResponse
    )
    assert registered.user_id > 0
    taken = api["register"].sync_detailed(client=anonymous, body=account)
    assert _parsed(taken, 409, models.ErrorEnvelope).error.code == "conflict"

    wrong = models.LoginRequest(username="client", password="not-the-password")
    refused = api["login"].sync_detailed(client=anonymous, body=wrong)
    assert _parsed(refused, 401, models.ErrorEnvelope).error.code == "invalid_credentials"
    login = models.LoginRequest(username="client", password="generated-client-pw")
    tokens = _parsed(
        api["login"].sync_detailed(client=anonymous, body=login), 200, models.TokenPair
    )

    def as_bearer(token: str) -> Any:
        return generated.AuthenticatedClient(
            base_url=served_api, token=token, raise_on_unexpected_status=True
        )

    client = as_bearer(tokens.access_token)
    profile = _parsed(api["me"].sync_detailed(client=client), 200, models.ProfileEnvelope)
    assert (profile.data.id, profile.data.username) == (registered.user_id, "client")

    # create, read, replace, patch
    created = [
        _parsed(
            api["create_task"].sync_detailed(
                client=client, body=models.TaskCreate(title=f"task {i}")
            ),
            201,
            models.TaskEnvelope,
        ).data
        for i in range(5)
    ]
    assert all(task.status == models.TaskStatus.PENDING for task in created)
    first = created[0]
    read = api["get_task"].sync_detailed(first.id, client=client)
    assert _parsed(read, 200, models.TaskEnvelope).data.title == "task 0"
    etag = read.headers["ETag"]
    replacement = models.TaskReplace(title="replaced", status=models.TaskStatus.PENDING)
    replaced = api["replace_task"].sync_detailed(
        first.id, client=client, body=replacement, if_match=etag
    )
    assert _parsed(replaced, 200, models.TaskEnvelope).data.version == first.version + 1
    stale = api["replace_task"].sync_detailed(
        first.id, client=client, body=replacement, if_match=etag
    )
    assert _parsed(stale, 412, models.ErrorEnvelope).error.code == "precondition_failed"
    done = models.TaskPatch(status=models.TaskStatus.COMPLETED)
    for task in created[1:3]:
        patched = api["patch_task"].sync_detailed(task.id, client=client, body=done)
        assert _parsed(patched, 200, models.TaskEnvelope).data.status == models.TaskStatus.COMPLETED

    # filter, and walk the pages with the cursor
    completed = api["list_tasks"].sync_detailed(client=client, status=models.TaskStatus.COMPLETED)
    page = _parsed(completed, 200, models.TaskListEnvelope)
    assert {task.id for task in page.data} == {created[1].id, created[2].id}
    seen, cursor = [], generated.types.UNSET
    while True:
        listed = api["list_tasks"].sync_detailed(client=client, limit=2, cursor=cursor)
        page = _parsed(listed, 200, models.TaskListEnvelope)
        seen.extend(task.id for task in page.data)
        if page.meta.next_cursor is None:
            break
        cursor = page.meta.next_cursor
    assert seen == sorted((task.id for task in created), reverse=True)

    # process in the background, poll its status
    queued = api["process_task"].sync_detailed(created[3].id, client=client)
    accepted = _parsed(queued, 202, models.ProcessAccepted)
    deadline = time.monotonic() + JOB_DEADLINE_SECONDS
    while True:
        polled = api["get_job_status"].sync_detailed(accepted.job_id, client=client)
        status = _parsed(polled, 200, models.JobStatusOut)
        if status.status == models.JobStatusOutStatus.COMPLETE or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # polling interval, with a deadline: not a synchronisation
    assert status.status == models.JobStatusOutStatus.COMPLETE
    processed = api["get_task"].sync_detailed(created[3].id, client=client)
    task = _parsed(processed, 200, models.TaskEnvelope).data
    assert (task.description, task.status) == (" [Processed]", models.TaskStatus.COMPLETED)

    # the error answers
    missing = api["get_task"].sync_detailed(2_000_000_000, client=client)
    assert _parsed(missing, 404, models.ErrorEnvelope).error.code == "not_found"
    blank = api["create_task"].sync_detailed(client=client, body=models.TaskCreate(title="   "))
    invalid = _parsed(blank, 422, models.ErrorEnvelope)
    assert "title" in invalid.error.details.additional_properties
    forged = api["list_tasks"].sync_detailed(client=as_bearer("not.a.token"))
    _parsed(forged, 401, models.ErrorEnvelope)

    # delete; a new access token from the refresh token; log out
    deleted = api["delete_task"].sync_detailed(created[4].id, client=client)
    assert deleted.status_code == 204 and deleted.content == b""
    gone = api["get_task"].sync_detailed(created[4].id, client=client)
    _parsed(gone, 404, models.ErrorEnvelope)
    refreshed = api["refresh"].sync_detailed(client=as_bearer(tokens.refresh_token))
    fresh = _parsed(refreshed, 200, models.AccessToken)
    assert _parsed(
        api["me"].sync_detailed(client=as_bearer(fresh.access_token)), 200, models.ProfileEnvelope
    )
    out = models.LogoutRequest(refresh_token=tokens.refresh_token)
    logged_out = api["logout"].sync_detailed(client=client, body=out)
    assert logged_out.status_code == 204 and logged_out.content == b""
    after = api["me"].sync_detailed(client=client)
    assert _parsed(after, 401, models.ErrorEnvelope).error.code == "token_revoked"
    again = api["refresh"].sync_detailed(client=as_bearer(tokens.refresh_token))
    assert _parsed(again, 401, models.ErrorEnvelope).error.code == "token_revoked"
    health = api["health"].sync_detailed(client=anonymous)
    assert _parsed(health, 200, models.Liveness).status == "ok"

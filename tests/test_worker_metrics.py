"""The worker's metrics (TASKAPI_WORKER_METRICS_PORT): a real arq worker process counts the jobs
it runs and serves them; the listener answers only the allowed peers; a port it cannot bind
stops it with one line; a bad setting is refused before it starts."""

from __future__ import annotations

import asyncio
import http.client
import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families

from taskapi.infra.metrics_server import MetricsListener
from taskapi.settings import SettingsError, load_settings
from taskapi.settings.values import parse_networks
from tests.conftest import create_account
from tests.services import free_port, until
from tests.smtp import smtp_sink
from tests.test_worker_settings import WorkerOutput, start_worker

EMAIL = "send_task_created_email"


def scrape_port(port: int, path: str = "/metrics", method: str = "GET") -> tuple[int, str, str]:
    """(status, content type, body) of one request to 127.0.0.1:port."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read().decode()
    finally:
        connection.close()


def job_counts(text: str, job: str) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("job") == job
    }


async def test_a_job_run_by_a_real_worker_is_counted_and_served(make_apps, redis_server):
    """A create's e-mail goes out through the worker's relay and job: its metrics port then
    counts it enqueued (by the relay), started and succeeded, with its duration."""
    (app,) = await make_apps(1)
    settings = app.extensions["taskapi"].settings
    account = await create_account(app)
    port = free_port()
    with smtp_sink() as sink:
        worker = start_worker(
            settings, redis_server.url, sink.url, TASKAPI_WORKER_METRICS_PORT=str(port)
        )
        output = WorkerOutput(worker)
        try:
            response = await app.test_client().post(
                "/api/tasks/", headers=account.headers, json={"title": "counted"}
            )
            assert response.status_code == 201
            await sink.wait_for(1, deadline=60)

            async def succeeded() -> bool:
                status, _, text = await asyncio.to_thread(scrape_port, port)
                return (
                    status == 200 and job_counts(text, EMAIL)["taskapi_jobs_succeeded_total"] >= 1
                )

            await until(succeeded, "the worker to count the job", 30)
            _, content_type, text = await asyncio.to_thread(scrape_port, port)
        finally:
            worker.terminate()
            worker.wait(timeout=60)
    assert worker.returncode == 0, output.text()[-3000:]
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    counts = job_counts(text, EMAIL)
    assert counts["taskapi_jobs_enqueued_total"] == 1
    assert counts["taskapi_jobs_started_total"] == 1
    assert counts["taskapi_jobs_failed_total"] == counts["taskapi_jobs_retried_total"] == 0
    assert counts["taskapi_job_duration_seconds_count"] == 1
    assert job_counts(text, "process_task")["taskapi_jobs_started_total"] == 0


async def test_a_worker_whose_metrics_port_is_taken_exits_with_one_line(make_apps, redis_server):
    (app,) = await make_apps(1)
    settings = app.extensions["taskapi"].settings
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        worker = start_worker(settings, redis_server.url, "", TASKAPI_WORKER_METRICS_PORT=str(port))
        output = WorkerOutput(worker)
        try:
            await until(lambda: worker.poll() is not None, "the worker to exit", 60)
        finally:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
    assert worker.returncode != 0
    lines = [line for line in output.text().splitlines() if "TASKAPI_WORKER_METRICS_PORT" in line]
    assert lines == [
        f"taskapi worker: TASKAPI_WORKER_METRICS_PORT: cannot listen on 127.0.0.1:{port}: "
        "Address already in use"
    ], output.text()[-3000:]


@pytest.fixture
async def listener():
    """Factory: a MetricsListener on a free loopback port, allowing `allow`."""
    started: list[MetricsListener] = []
    scrapes: list[int] = []

    async def factory(allow: str) -> tuple[int, list[int]]:
        async def before_scrape() -> None:
            scrapes.append(1)

        port = free_port()
        server = MetricsListener("127.0.0.1", port, parse_networks(allow), before_scrape)
        await server.start()
        started.append(server)
        return port, scrapes

    yield factory
    for server in started:
        await server.stop()


async def test_the_listener_serves_an_allowed_peer(listener):
    port, scrapes = await listener("127.0.0.0/8")
    status, content_type, text = await asyncio.to_thread(scrape_port, port)
    assert (status, content_type) == (200, "text/plain; version=0.0.4; charset=utf-8")
    assert "# TYPE taskapi_jobs_started_total counter" in text
    assert scrapes == [1]  # the gauges were read for it
    assert await asyncio.to_thread(scrape_port, port, "/metrics?x=1", "HEAD") == (
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        "",
    )


async def test_the_listener_answers_404_to_a_peer_outside_the_list_and_other_paths(listener):
    envelope = (
        '{"status":"error","error":{"message":"The requested URL was not found on the server.",'
        '"code":"not_found"}}'
    )
    port, scrapes = await listener("10.0.0.0/8")
    assert await asyncio.to_thread(scrape_port, port) == (404, "application/json", envelope)
    assert scrapes == []
    open_port, _ = await listener("127.0.0.1")
    assert (await asyncio.to_thread(scrape_port, open_port, "/"))[0] == 404
    assert (await asyncio.to_thread(scrape_port, open_port, "/metrics", "POST"))[0] == 404


async def test_the_listener_closes_a_connection_that_is_not_http(listener):
    port, scrapes = await listener("127.0.0.0/8")

    def garbage() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"hello\r\n\r\n")
            return sock.recv(1024)

    assert await asyncio.to_thread(garbage) == b""
    assert scrapes == []


@pytest.mark.parametrize(
    ("variable", "text", "problem"),
    [
        ("TASKAPI_METRICS_ALLOW", "localhost", "not an address or network"),
        ("TASKAPI_WORKER_METRICS_PORT", "70000", "must be 65535 or less"),
        ("TASKAPI_WORKER_METRICS_HOST", "metrics.example", "must be an IP address"),
    ],
)
def test_a_bad_metrics_setting_is_one_line_naming_it(variable, text, problem):
    with pytest.raises(SettingsError) as raised:
        load_settings(environ={variable: text}, env="testing")
    message = str(raised.value)
    assert message.startswith(variable) and problem in message and "\n" not in message


def test_the_defaults_allow_loopback_only_and_start_no_worker_listener():
    settings = load_settings(environ={}, env="development")
    assert [str(n) for n in settings.metrics_allow] == ["127.0.0.0/8", "::1/128"]
    assert settings.metrics_enabled and settings.worker_metrics_port is None

"""config/grafana's dashboard asks only for metrics taskapi exposes: every metric name in its
PromQL is one that a real API instance or a real arq worker serves (both scraped here), and
config/prometheus's scrape config scrapes both kinds of process."""

from __future__ import annotations

import asyncio
import json
import re

import yaml
from prometheus_client.parser import text_string_to_metric_families

from taskapi.settings import PROJECT_ROOT
from tests.services import free_port, until
from tests.test_worker_metrics import scrape_port
from tests.test_worker_settings import start_worker

DASHBOARD = PROJECT_ROOT / "config/grafana/taskapi-dashboard.json"
SCRAPE_CONFIG = PROJECT_ROOT / "config/prometheus/prometheus.yml"
# the sample names each kind of metric family is written as in the text format
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset"}


def expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            found += [target["expr"] for target in inner.get("targets", [])]
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: its identifiers but functions, grouping
    labels, label matchers, ranges, strings and operators."""
    bare = re.sub(r'"[^"]*"', "", expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", bare)
    bare = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)
    identifiers = re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(?!\s*\()", bare)
    return {name for name in identifiers if name not in PROMQL_WORDS}


def exposed(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def test_metric_names_are_read_from_promql():
    expr = (
        'sum by (le, route) (rate(taskapi_x_bucket{status=~"5.."}[5m])) '
        "/ scalar(sum(rate(taskapi_y_total[5m]))) and on (instance) up"
    )
    assert metric_names(expr) == {"taskapi_x_bucket", "taskapi_y_total", "up"}


async def test_every_metric_the_dashboard_queries_is_exposed(make_apps, redis_server):
    (app,) = await make_apps(1)
    api = await app.test_client().get("/metrics", scope_base={"client": ("127.0.0.1", 50000)})
    assert api.status_code == 200
    api_names = exposed(await api.get_data(as_text=True))
    settings = app.extensions["taskapi"].settings
    port = free_port()
    worker = start_worker(settings, redis_server.url, "", TASKAPI_WORKER_METRICS_PORT=str(port))
    try:

        async def serving() -> bool:
            try:
                return (await asyncio.to_thread(scrape_port, port))[0] == 200
            except OSError:
                return False

        await until(serving, "the worker's metrics", 60)
        worker_names = exposed((await asyncio.to_thread(scrape_port, port))[2])
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    queried = {name for expr in expressions() for name in metric_names(expr)}
    assert len(queried) >= 15  # the golden signals and more
    assert queried - (api_names | worker_names) == set()
    jobs = {name for name in queried if name.startswith(("taskapi_jobs_", "taskapi_job_"))}
    assert jobs and jobs <= worker_names
    assert {"taskapi_http_requests_total", "taskapi_db_pool_checked_out"} <= api_names


def test_the_scrape_config_scrapes_the_api_instances_and_the_worker():
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"taskapi-api", "taskapi-worker"}
    for job in jobs.values():
        assert job.get("metrics_path", "/metrics") == "/metrics"
        targets = [t for group in job["static_configs"] for t in group["targets"]]
        assert targets and all(re.fullmatch(r"[\w.\-]+:\d+", t) for t in targets)
    assert len(jobs["taskapi-api"]["static_configs"][0]["targets"]) >= 2

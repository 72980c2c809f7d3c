"""The documentation pages in a real browser (the machine's headless Chromium), through the
repository's nginx site and its Content-Security-Policy: both pages render in standards mode
with no console error (no refused script, worker or image, nothing fetched from elsewhere),
Swagger UI's "Authorize" flow calls the API with the token, and ReDoc's search finds
operations. Screenshots of both pages go to $TASKAPI_SCREENSHOT_DIR when it is set (else the
test's temporary directory)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskapi.settings import PROJECT_ROOT
from tests.deployment import (
    BIN,
    SERVER_NAME,
    ApiInstance,
    HttpsClient,
    Nginx,
    production_env,
)
from tests.services import free_port, unavailable

CHROMIUM = ("chromium", "chromium-browser")
DEADLINE_SECONDS = 30.0


def _binary(names: tuple[str, ...], package: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    unavailable(f"`{names[0]}` is not installed (apt-get install {package})")
    raise AssertionError("unreachable")


@pytest.fixture
def site(postgres_server, redis_server, tmp_path) -> Iterator[Nginx]:
    """One API instance behind the nginx site."""
    redis_server.flush()
    database_url = postgres_server.create_database(f"docs_{int(time.time() * 1000) % 10**9}")
    env = production_env(database_url, redis_server.url)
    migrate = subprocess.run(
        [str(BIN / "taskapi"), "db", "upgrade"], cwd=PROJECT_ROOT, env=env, capture_output=True
    )
    assert migrate.returncode == 0, migrate.stderr.decode()[-2000:]
    instance = ApiInstance(free_port(), env, tmp_path / "api.log")
    nginx = None
    try:
        instance.start()
        nginx = Nginx.start(tmp_path / "nginx", [instance.port], "1m")
        yield nginx
    finally:
        if nginx is not None:
            nginx.stop()
        instance.stop()


@pytest.fixture
def browser(tmp_path) -> Iterator[Any]:
    chromium = _binary(CHROMIUM, "chromium")
    driver_binary = _binary(("chromedriver",), "chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--ignore-certificate-errors",  # nginx's certificate here is self-signed
        "--window-size=1280,2000",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_binary), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _until(driver: Any, condition: Any, what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, DEADLINE_SECONDS).until(condition, message=what)


def _console_errors(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _screenshot(driver: Any, name: str, tmp_path: Path) -> None:
    directory = Path(os.environ.get("TASKAPI_SCREENSHOT_DIR") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(directory / name))


def _token(nginx: Nginx) -> tuple[str, str]:
    client = HttpsClient(nginx.https_port)
    body = {"username": "reader", "email": "reader@example.com", "password": "docs-password-1"}
    assert client.request("POST", "/auth/register", body)[0] == 201
    status, _, tokens = client.request("POST", "/auth/login", body)
    assert status == 200
    return body["username"], tokens["access_token"]


def test_swagger_ui_authorizes_and_calls_the_api(site, browser, tmp_path):
    from selenium.webdriver.common.by import By

    username, token = _token(site)
    base = f"https://{SERVER_NAME}:{site.https_port}"
    browser.get(f"{base}/docs")
    assert browser.execute_script("return document.compatMode") == "CSS1Compat"
    _until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock"), "operations shown")

    browser.find_element(By.CSS_SELECTOR, ".btn.authorize").click()
    field = _until(
        browser,
        lambda d: d.find_element(By.CSS_SELECTOR, ".auth-container input"),
        "the Authorize dialog",
    )
    field.send_keys(token)
    browser.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper .authorize").click()
    browser.find_element(By.CSS_SELECTOR, ".btn-done").click()

    (me,) = [
        block
        for block in browser.find_elements(By.CSS_SELECTOR, ".opblock-get")
        if block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").text.strip() == "/auth/me"
    ]
    me.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    _until(browser, lambda d: me.find_element(By.CSS_SELECTOR, ".try-out__btn"), "Try it out")
    me.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    me.find_element(By.CSS_SELECTOR, ".execute").click()
    status = _until(
        browser,
        lambda d: me.find_element(
            By.CSS_SELECTOR, ".live-responses-table tbody .response-col_status"
        ),
        "the live response",
    )
    assert status.text.strip() == "200"
    assert username in me.find_element(By.CSS_SELECTOR, ".live-responses-table .microlight").text
    _screenshot(browser, "docs.png", tmp_path)
    assert _console_errors(browser) == []


def test_redoc_renders_and_searches_offline(site, browser, tmp_path):
    from selenium.webdriver.common.by import By

    base = f"https://{SERVER_NAME}:{site.https_port}"
    browser.get(f"{base}/redocs")
    assert browser.execute_script("return document.compatMode") == "CSS1Compat"
    search = _until(
        browser, lambda d: d.find_element(By.CSS_SELECTOR, "input.search-input"), "the search box"
    )
    search.send_keys("task")
    _until(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, "[data-role='search:results'] li"),
        "search results (the search worker runs)",
    )
    _screenshot(browser, "redocs.png", tmp_path)
    assert _console_errors(browser) == []
    # the browser asked nothing of anyone but this site (the page's requests, as it saw them)
    origins = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)"
    )
    assert set(origins) <= {base}, origins

"""The local stack (`metrify up`) and a headless Chromium for the browser tests.

One stack per module (its environment changes are undone when the module ends): Kafka, the
simulator feed and Airflow's API server, scheduler, DAG
processor and triggerer, on a free port, in a private METRIFY_HOME. Tasks get no retries here
(METRIFY_TASK_RETRIES=0) so a failure drill fails at once. Screenshots are kept as artifacts in
`test-artifacts/browser/`.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.skip_rule import require

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    from metrify.config import load_settings
    from metrify_dev import stack as local_stack

    home = tmp_path_factory.mktemp("stack")
    overrides = {
        "METRIFY_HOME": str(home),
        "METRIFY_UI_PORT": str(_free_port()),
        "METRIFY_TASK_RETRIES": "0",
        "METRIFY_ALERT_LOG": str(home / "alerts.log"),
    }
    saved = {key: os.environ.get(key) for key in overrides}
    os.environ.update(overrides)
    settings = load_settings()
    try:
        info = local_stack.up(settings, meters=20)
        yield {**info, "home": home, "settings": settings}
    finally:
        local_stack.down(settings)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    require(
        Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(),
        "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)",
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture
def screenshot(browser, request):
    """Call to save a screenshot named after the test; one is also taken when a test fails."""

    def take(label: str = "") -> Path:
        path = ARTIFACTS / f"{request.node.name}{'-' + label if label else ''}.png"
        browser.save_screenshot(str(path))
        return path

    yield take
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        take("failure")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report

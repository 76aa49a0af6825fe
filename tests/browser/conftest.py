"""A headless Chromium for the browser tests; the local stack they drive is the `stack` fixture
of tests/airflow_stack.py. Screenshots are kept as artifacts in `test-artifacts/browser/`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.skip_rule import require

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


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

"""The Airflow UI as its users use it, in headless Chromium against `metrify up`."""

from __future__ import annotations

import time
from datetime import date
from urllib.parse import quote

import pandas as pd
import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from metrify_dev import kafka_mock
from tests.airflow_stack import api

EXPECTED_DAGS = (
    "apply_retention",
    "erase_meter",
    "forecast_load",
    "ingest_meter_readings",
    "ingest_grid_status",
    "ingest_weather",
    "ingest_weather_forecast",
    "quality_meter_readings",
    "quality_sources",
    "release_quality_interval",
    "transform",
    "warehouse_daily",
)
pytestmark = pytest.mark.browser


def login(browser, stack: dict, user: str = "admin") -> None:
    browser.delete_all_cookies()
    browser.get(f"{stack['url']}/")
    wait = WebDriverWait(browser, 60)
    fields = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "input[name='username'], input[name='password']"))
    by_name = {f.get_attribute("name"): f for f in fields}
    by_name["username"].send_keys(user)
    by_name["password"].send_keys(stack["passwords"][user])
    browser.find_element(By.XPATH, "//button[normalize-space()='Sign in']").click()
    wait.until(lambda d: "/auth/login" not in d.current_url)


def wait_for_text(browser, text: str, timeout: float = 60) -> None:
    WebDriverWait(browser, timeout).until(lambda d: text.lower() in d.find_element(By.TAG_NAME, "body").text.lower())


def runs(session: requests.Session, stack: dict, dag_id: str) -> list[dict]:
    response = session.get(f"{stack['url']}/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100}, timeout=10)
    response.raise_for_status()
    return response.json()["dag_runs"]


def wait_for_new_run(session, stack, dag_id: str, known: set[str], states: set[str], timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    latest = None
    while time.monotonic() < deadline:
        new = [r for r in runs(session, stack, dag_id) if r["dag_run_id"] not in known]
        if new:
            latest = new[0]
            if latest["state"] in states:
                return latest
        time.sleep(2)
    raise AssertionError(f"no new {dag_id} run reached {states} within {timeout:.0f} s (last: {latest})")


def click_trigger(browser, stack: dict, dag_id: str) -> None:
    browser.get(f"{stack['url']}/dags/{dag_id}")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "button[aria-label='Trigger Dag']")).click()
    wait.until(lambda d: d.find_element(By.XPATH, "//*[normalize-space()='Single Run']"))
    buttons = browser.find_elements(By.XPATH, "//button[normalize-space()='Trigger' and not(@aria-label)]")
    buttons[-1].click()


def test_login_lists_every_dag_without_import_errors(stack, browser, screenshot) -> None:
    login(browser, stack)
    browser.get(f"{stack['url']}/dags")
    for dag_id in EXPECTED_DAGS:
        wait_for_text(browser, dag_id)
    screenshot()
    errors = api(stack).get(f"{stack['url']}/api/v2/importErrors", timeout=10).json()
    assert errors["total_entries"] == 0, errors


def test_trigger_ingestion_from_the_ui_and_watch_it_succeed(stack, browser, screenshot) -> None:
    session = api(stack)
    known = {r["dag_run_id"] for r in runs(session, stack, "ingest_meter_readings")}
    login(browser, stack)
    click_trigger(browser, stack, "ingest_meter_readings")
    run = wait_for_new_run(session, stack, "ingest_meter_readings", known, {"success", "failed"})
    assert run["state"] == "success", run
    assert run["run_type"] == "manual"
    browser.get(f"{stack['url']}/dags/ingest_meter_readings/runs/{quote(run['dag_run_id'])}")
    wait_for_text(browser, "reconcile")
    wait_for_text(browser, "success")
    screenshot()


def test_backfill_the_daily_warehouse_build_from_the_ui(stack, browser, screenshot) -> None:
    """`transform` runs on asset updates (nothing to backfill by date); its daily sibling
    `warehouse_daily` rebuilds whole days and is what a backfill over a date range runs.

    The UI's part is checked here: the backfill it requests holds the run of the chosen day, and
    the runs page lists it. That a backfill's runs rebuild the days is checked by
    tests/integration/test_backfill_cli.py on a real scheduler (the same backfill records); here
    the run would queue behind the stack's own first warehouse runs (one-slot DuckDB pool, about
    9 minutes), so the backfill is cancelled once its run is seen."""
    session = api(stack)
    known = {r["dag_run_id"] for r in runs(session, stack, "warehouse_daily")}
    login(browser, stack)
    start_backfill_from_ui(browser, stack, "warehouse_daily", "2026/11/20 00:00", "2026/11/20 23:59")
    backfill = wait_for_backfill(browser, session, stack, "warehouse_daily")
    new = [r for r in runs(session, stack, "warehouse_daily") if r["dag_run_id"] not in known]
    assert [r["run_type"] for r in new] == ["backfill"], new
    # the run due at 02:30 Berlin on the 20th rebuilds the business day before it
    assert pd.Timestamp(new[0]["logical_date"]).tz_convert("Europe/Berlin").date() == date(2026, 11, 20), new
    browser.get(f"{stack['url']}/dags/warehouse_daily/runs")
    wait_for_text(browser, "backfill")
    screenshot()
    cancelled = session.put(f"{stack['url']}/api/v2/backfills/{backfill['id']}/cancel", timeout=30)
    cancelled.raise_for_status()
    assert cancelled.json()["completed_at"] is not None, cancelled.json()


def test_failed_task_log_names_the_problem_and_the_runbook(stack, browser, screenshot) -> None:
    """The 3 a.m. case: the broker is down; the failed task's log says so and links the runbook."""
    session = api(stack)
    known = {r["dag_run_id"] for r in runs(session, stack, "ingest_meter_readings")}
    kafka_mock.down(stack["settings"])
    login(browser, stack)
    click_trigger(browser, stack, "ingest_meter_readings")
    run = wait_for_new_run(session, stack, "ingest_meter_readings", known, {"success", "failed"})
    assert run["state"] == "failed", run
    run_id = quote(run["dag_run_id"])
    browser.get(f"{stack['url']}/dags/ingest_meter_readings/runs/{run_id}/tasks/list_partitions")
    wait_for_text(browser, "Kafka broker unreachable at", timeout=90)
    wait_for_text(browser, "RUNBOOK.md#broker-down")
    screenshot()
    alerts = (stack["home"] / "alerts.log").read_text()
    assert "list_partitions" in alerts and "broker-down" in alerts, "no on-call alert was sent"


def start_backfill_from_ui(browser, stack: dict, dag_id: str, start: str, end: str) -> None:
    """Trigger → Backfill → From/To (YYYY/MM/DD HH:mm) → Run Backfill."""
    browser.get(f"{stack['url']}/dags/{dag_id}")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "button[aria-label='Trigger Dag']")).click()
    wait.until(lambda d: d.find_element(By.XPATH, "//*[normalize-space()='Backfill']")).click()
    for index, moment in enumerate((start, end)):
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid='datetime-input']"))[index].click()
        popover = wait.until(
            lambda d: d.find_element(By.CSS_SELECTOR, "[data-scope='popover'][data-part='content'][data-state='open']")
        )
        date_field, time_field = popover.find_elements(
            By.CSS_SELECTOR, "input[placeholder='YYYY/MM/DD'], input[placeholder='HH:mm']"
        )
        day, clock = moment.split(" ")
        for field, value in ((date_field, day), (time_field, clock)):
            field.click()
            field.send_keys(Keys.CONTROL, "a")
            field.send_keys(value)
        time_field.send_keys(Keys.ENTER)
        browser.find_element(By.XPATH, "//*[normalize-space()='Date Range']").click()  # close the picker
    wait_for_text(browser, "will be triggered")  # the dry run saw the dates
    wait.until(
        lambda d: d.find_element(By.XPATH, "//button[normalize-space()='Run Backfill' and not(@disabled)]")
    ).click()


def wait_for_backfill(browser, session: requests.Session, stack: dict, dag_id: str, timeout: float = 120) -> dict:
    """The UI's request is asynchronous: wait until the API lists exactly one backfill for the
    DAG and return it; on timeout the message carries what the page says (an error toast)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = session.get(f"{stack['url']}/api/v2/backfills", params={"dag_id": dag_id}, timeout=10)
        response.raise_for_status()
        if response.json()["total_entries"] == 1:
            return response.json()["backfills"][0]
        time.sleep(2)
    page = browser.find_element(By.TAG_NAME, "body").text
    raise AssertionError(f"no backfill of {dag_id} within {timeout:.0f} s: {response.json()}; the page says: {page}")

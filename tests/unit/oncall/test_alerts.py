"""Failure alerts reach the configured channels with what the on-call engineer needs."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest

from metrify.oncall import alerts


@pytest.fixture
def webhook():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


def failure_context(error: Exception) -> dict:
    ti = SimpleNamespace(
        dag_id="ingest_meter_readings",
        task_id="list_partitions",
        map_index=-1,
        run_id="scheduled__2026-11-23T03:00:00+00:00",
        try_number=2,
        log_url="http://localhost:8080/dags/ingest_meter_readings/runs/x/tasks/list_partitions",
    )
    return {"ti": ti, "exception": error}


def test_failure_alert_goes_to_log_and_webhook_with_runbook_link(tmp_path, monkeypatch, webhook) -> None:
    url, received = webhook
    log_path = tmp_path / "alerts.log"
    monkeypatch.setenv("METRIFY_ALERT_LOG", str(log_path))
    monkeypatch.setenv("METRIFY_ALERT_WEBHOOK_URL", url)
    error = RuntimeError("Kafka broker unreachable at 127.0.0.1:9092 (no metadata ...)")
    alerts.FailureNotifier().notify(failure_context(error))

    logged = json.loads(log_path.read_text().splitlines()[-1])
    assert logged["dag_id"] == "ingest_meter_readings" and logged["task_id"] == "list_partitions"
    assert logged["try_number"] == 2
    assert "Kafka broker unreachable" in logged["error"]
    assert logged["runbook"].endswith("RUNBOOK.md#broker-down")
    assert len(received) == 1
    text = received[0]["text"]
    assert "ingest_meter_readings.list_partitions" in text and "runbook: RUNBOOK.md#broker-down" in text
    assert "log: http://localhost:8080/dags/ingest_meter_readings" in text


@pytest.mark.parametrize(
    ("error", "section"),
    [
        ("HTTP 401 from api.openweathermap.org: check connection openweathermap_default", "api-key-expired"),
        ("quality gate failed: expectation expect_column_values_to_be_between", "quality-gate-failed"),
        ("reconciliation failed: messages != raw rows + quarantined rows", "reconciliation-failed"),
        ("dbt model fct_meter_readings_hourly failed", "warehouse-load-failed"),
        (
            "TenneT (10YDE-EON------1): ENTSO-E has not published 4 quarter-hours older than its 1 h delay",
            "source-data-missing",
        ),
        ("dwd: 1 of 24 cities failed …: Köln: no record for 2026-11-22 14:00–16:00 UTC", "source-data-missing"),
        ("meters not in the registry: DE0000401403 (first reading 2026-03-28 00:15 UTC)", "meter-not-in-the-registry"),
        (
            "RuntimeError: erasure of meter meter~0123456789abcdef failed: duckdb.IOException: warehouse locked",
            "erasure-and-retention",
        ),
        ("ValueError: erase_meter refused the run's conf: meter_id must be a meter id", "erasure-and-retention"),
        ("RuntimeError: lake retention failed: PermissionError: raw/meter_readings", "erasure-and-retention"),
        ("something nobody foresaw", "triage"),
    ],
)
def test_each_failure_kind_links_its_runbook_section(error: str, section: str) -> None:
    assert alerts.runbook_link(error).endswith(f"#{section}")


def test_every_linked_section_exists_in_the_runbook() -> None:
    from tests import REPO_ROOT

    runbook = (REPO_ROOT / "RUNBOOK.md").read_text()
    anchors = {s for _, s in alerts.RUNBOOK_SECTIONS} | {"triage", "deadline-missed"}
    for anchor in anchors:
        heading = anchor.replace("-", " ")
        assert f"## {heading}".lower() in runbook.lower(), f"RUNBOOK.md has no section for #{anchor}"


def test_deadline_missed_alert(tmp_path, monkeypatch) -> None:
    log_path = tmp_path / "alerts.log"
    monkeypatch.setenv("METRIFY_ALERT_LOG", str(log_path))
    monkeypatch.delenv("METRIFY_ALERT_WEBHOOK_URL", raising=False)
    asyncio.run(alerts.deadline_missed(dag_id="transform", message="transform did not finish within 0:45:00"))
    logged = json.loads(log_path.read_text())
    assert logged["kind"] == "deadline missed" and logged["dag_id"] == "transform"
    assert logged["runbook"].endswith("#deadline-missed")


def test_a_broken_channel_does_not_hide_the_others(tmp_path, monkeypatch) -> None:
    log_path = tmp_path / "alerts.log"
    monkeypatch.setenv("METRIFY_ALERT_LOG", str(log_path))
    monkeypatch.setenv("METRIFY_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/unreachable")
    used = alerts.send(alerts.build_alert("task failed", failure_context(ValueError("boom"))))
    assert used == ["log"] and log_path.exists()

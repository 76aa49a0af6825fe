"""The ingestion DAG's task bodies: reconciliation, the too-late alert, settings reaching the drain."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from metrify.ingest import kafka, tasks
from metrify.ingest.tasks import reconcile


def report(partition: int, messages: int, valid: int, quarantined: int, too_late: int = 0) -> dict:
    return {
        "topic": "meter-readings",
        "partition": partition,
        "start_offset": 10,
        "end_offset": 10 + messages,
        "messages": messages,
        "valid_rows": valid,
        "quarantined": quarantined,
        "too_late": too_late,
        "files": 2,
    }


@pytest.fixture
def alert_log(tmp_path, monkeypatch):
    path = tmp_path / "alerts.log"
    monkeypatch.setenv("METRIFY_ALERT_LOG", str(path))
    monkeypatch.delenv("METRIFY_ALERT_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("METRIFY_ALERT_EMAIL_TO", raising=False)
    monkeypatch.delenv("METRIFY_LATE_LOOKBACK_DAYS", raising=False)
    return path


def test_reconcile_sums_partitions(alert_log) -> None:
    summary = reconcile([report(0, 100, 98, 2), report(1, 50, 50, 0)])
    assert summary["messages"] == 150 and summary["valid_rows"] == 148 and summary["quarantined"] == 2
    assert summary["offsets"] == {0: [10, 110], 1: [10, 60]}
    assert summary["too_late"] == 0
    assert not alert_log.exists(), "no too-late reading, no alert"


def test_reconcile_names_the_partition_and_offsets_that_lost_messages() -> None:
    with pytest.raises(RuntimeError, match=r"meter-readings\[1\] offsets 10\.\.59.*RUNBOOK"):
        reconcile([report(0, 100, 98, 2), report(1, 50, 49, 0)])


def test_too_late_readings_of_all_partitions_send_one_alert_per_run(alert_log) -> None:
    ti = SimpleNamespace(
        dag_id="ingest_meter_readings",
        task_id="reconcile",
        map_index=-1,
        run_id="scheduled__2026-11-23T03:00:00+00:00",
        try_number=1,
        log_url="http://localhost:8080/dags/ingest_meter_readings/runs/x/tasks/reconcile",
    )
    reports = [report(0, 100, 95, 5, too_late=3), report(1, 50, 48, 2, too_late=2), report(2, 10, 10, 0)]
    summary = reconcile(reports, {"ti": ti})
    assert summary["too_late"] == 5 and summary["quarantined"] == 7

    (alert,) = [json.loads(line) for line in alert_log.read_text().splitlines()]
    assert alert["kind"] == "too-late readings quarantined"
    assert alert["dag_id"] == "ingest_meter_readings" and alert["task_id"] == "reconcile"
    assert alert["error"] == (
        "5 reading(s) older than the 35-day lookback (METRIFY_LATE_LOOKBACK_DAYS) were quarantined "
        "with reason 'too late: ...' under quarantine/meter_readings/: meter-readings[0]: 3, meter-readings[1]: 2"
    )
    assert alert["runbook"].endswith("RUNBOOK.md#too-late-readings")


def test_drain_one_quarantines_by_the_configured_lookback(broker, metrify_home, alert_log, monkeypatch) -> None:
    from metrify_dev.simulator import produce
    from tests.unit.ingest.test_decode import encode, reading

    topic, group = f"meters-{uuid.uuid4().hex[:8]}", f"group-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("METRIFY_METER_TOPIC", topic)
    monkeypatch.setenv("METRIFY_CONSUMER_GROUP", group)
    monkeypatch.setenv("METRIFY_LATE_LOOKBACK_DAYS", "10")
    extra = {"bootstrap.servers": broker["bootstrap"]}
    monkeypatch.setattr(
        tasks, "kafka_consumer_config", lambda s: kafka.consumer_config(extra, group_id=s.consumer_group)
    )
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    values = [encode(reading(reading_ts=f"{hour - timedelta(days=age):%Y-%m-%dT%H:%M:%SZ}")) for age in (1, 20, 5)]
    produce([b"one-meter"] * 3, values, topic, kafka.producer_config(extra))

    reports = [tasks.drain_one(partition) for partition in tasks.list_partitions()]
    assert sum(r["messages"] for r in reports) == 3 and sum(r["too_late"] for r in reports) == 1
    summary = reconcile(reports)
    assert summary["too_late"] == 1 and "10-day lookback" in json.loads(alert_log.read_text())["error"]

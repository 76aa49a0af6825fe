"""The ingestion DAG's task bodies: reconciliation on the reports real drains emit and the files
they wrote, the too-late alert, and settings reaching the drain."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from metrify import lake
from metrify.config import load_settings
from metrify.ingest import drain, kafka, tasks
from metrify.ingest.tasks import reconcile
from metrify_dev import kafka_mock
from tests.unit.ingest.test_drain import DAY, _produce


@pytest.fixture
def produced(broker, metrify_home) -> tuple[str, dict]:
    """A topic holding a simulated day of 20 meters with poison messages, and the simulation's counts."""
    topic = f"meters-{uuid.uuid4().hex[:8]}"
    sim = _produce(broker, topic, meters=20, seed=5, poison_rate=0.01, start=DAY)
    return topic, sim.counts


@pytest.fixture
def drained(broker, produced) -> list[dict]:
    topic, _ = produced
    config = kafka.consumer_config({"bootstrap.servers": broker["bootstrap"]}, group_id=f"g-{uuid.uuid4().hex[:8]}")
    root = lake.lake_root()
    return [
        drain.drain_partition(config, topic, p, root, batch_size=500).as_dict() for p in kafka.partitions(config, topic)
    ]


@pytest.fixture
def alert_log(tmp_path, monkeypatch):
    path = tmp_path / "alerts.log"
    monkeypatch.setenv("METRIFY_ALERT_LOG", str(path))
    monkeypatch.delenv("METRIFY_ALERT_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("METRIFY_ALERT_EMAIL_TO", raising=False)
    monkeypatch.delenv("METRIFY_LATE_LOOKBACK_DAYS", raising=False)
    return path


def _lake_files(layer: str) -> list[Path]:
    """The Parquet files below the lake's `layer`/meter_readings, found on disk (not by the lake module)."""
    return sorted((Path(lake.lake_root().path) / layer / "meter_readings").rglob("*.parquet"))


def _rows(files: list[Path]) -> int:
    return sum(pq.ParquetFile(path).metadata.num_rows for path in files)


def test_reconcile_counts_the_published_files_against_the_offsets_read(produced, drained, alert_log) -> None:
    """The summary's totals are what was produced (the simulation's counts) and what the lake
    holds (counted here from the files with pyarrow), not the drain reports added up again."""
    _, counts = produced
    summary = reconcile(drained)
    raw, quarantine = _lake_files("raw"), _lake_files("quarantine")
    assert counts["poison_messages"] > 0
    assert summary["consumed"] == counts["messages"]
    assert summary["quarantined"] == counts["poison_messages"] == _rows(quarantine)
    assert summary["valid_rows"] == counts["messages"] - counts["poison_messages"] == _rows(raw)
    assert summary["files"] == len(raw) + len(quarantine)
    # a fresh topic read from its start: partitions 0..n-1, each range from offset 0 to its message count
    assert sorted(summary["offsets"]) == list(range(kafka_mock.MOCK_PARTITIONS))
    assert {start for start, _ in summary["offsets"].values()} == {0}
    assert sum(end for _, end in summary["offsets"].values()) == counts["messages"]
    assert summary["too_late"] == 0 and not alert_log.exists(), "no too-late reading, no alert"


def test_reconcile_fails_when_a_published_file_lost_a_row(drained) -> None:
    victim = next(f for r in drained for f in r["files"] if "/raw/" in f)
    path = victim.removeprefix("file://")
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)  # a file that lost its first row after the drain wrote it
    partition = next(r for r in drained if victim in r["files"])
    pattern = rf"reconciliation failed: .*\[{partition['partition']}\] offsets .*messages read but \d+ rows in the"
    with pytest.raises(RuntimeError, match=pattern):
        reconcile(drained)


def test_reconcile_fails_when_offsets_were_read_but_not_counted(drained) -> None:
    broken = [dict(r) for r in drained]
    broken[0]["consumed"] -= 1  # a reader that dropped a message without saying so
    with pytest.raises(RuntimeError, match=r"offsets but \d+ messages read \+ 0 gaps"):
        reconcile(broken)


def test_too_late_readings_of_all_partitions_send_one_alert_per_run(alert_log) -> None:
    ti = SimpleNamespace(
        dag_id="ingest_meter_readings",
        task_id="reconcile",
        map_index=-1,
        run_id="scheduled__2026-11-23T03:00:00+00:00",
        try_number=1,
        log_url="http://localhost:8080/dags/ingest_meter_readings/runs/x/tasks/reconcile",
    )
    reports = [
        {"topic": "meter-readings", "partition": 0, "too_late": 3},
        {"topic": "meter-readings", "partition": 1, "too_late": 2},
        {"topic": "meter-readings", "partition": 2, "too_late": 0},
    ]
    tasks.alert_too_late(reports, {"ti": ti}, load_settings())

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
    assert sum(r["consumed"] for r in reports) == 3 and sum(r["too_late"] for r in reports) == 1
    summary = reconcile(reports)
    assert summary["too_late"] == 1 and "10-day lookback" in json.loads(alert_log.read_text())["error"]
    quarantined = pq.read_table(
        [f.removeprefix("file://") for r in reports for f in r["files"] if "/quarantine/" in f]
    ).to_pylist()
    assert [row["reason"].startswith("too late") for row in quarantined] == [True]

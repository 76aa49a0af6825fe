"""End to end under Airflow: simulate, crash a drain mid-batch, run the DAG, run it again.

Two `airflow dags test` runs (each ~15-20 s of process start-up) prove the wiring; the drain's
logic is covered as plain functions in tests/unit/test_drain.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest

from metrify import lake
from metrify.config import load_settings
from metrify.contracts.readings import DATASET
from metrify.ingest import kafka
from metrify_dev.airflow_env import dags_test, ensure_db
from metrify_dev.simulator import SimulationOptions, produce, simulate
from tests.unit.ingest.test_decode import encode, reading
from tests.unit.ingest.test_drain import CRASH

pytestmark = pytest.mark.airflow


def _state(root) -> tuple[int, int, int]:
    raw = lake.read_table(root / "raw" / DATASET, columns=["partition", "offset"])
    keys = set(zip(raw["partition"].to_pylist(), raw["offset"].to_pylist(), strict=True))
    return raw.num_rows, len(keys), lake.count_rows(root / "quarantine" / DATASET)


def test_ingest_dag_end_to_end_exactly_once(broker, metrify_home, monkeypatch) -> None:
    topic = f"meter-readings-e2e-{uuid.uuid4().hex[:6]}"
    group = f"metrify-e2e-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("METRIFY_METER_TOPIC", topic)
    monkeypatch.setenv("METRIFY_CONSUMER_GROUP", group)
    monkeypatch.setenv("METRIFY_BATCH_SIZE", "900")
    # The simulated day is fixed: keep it within the lookback whatever today's date.
    monkeypatch.setenv(
        "METRIFY_LATE_LOOKBACK_DAYS", str((datetime.now(UTC) - datetime(2026, 11, 21, tzinfo=UTC)).days + 35)
    )
    settings = load_settings()
    connection = {settings.kafka_conn_id: {"conn_type": "kafka", "extra": {"bootstrap.servers": broker["bootstrap"]}}}

    sim = simulate(
        SimulationOptions(
            meters=80,
            start=datetime(2026, 11, 21, tzinfo=UTC),
            seed=99,
            anomaly_rate=0.1,
            poison_rate=0.003,
            late_rate=0.01,
            out_of_order_rate=0.01,
            duplicate_rate=0.005,
        )
    )
    produce(sim.keys, sim.values, topic, kafka.producer_config({"bootstrap.servers": broker["bootstrap"]}))
    # and three valid readings from before the lookback, of three meters
    late = [encode(reading(meter_id=f"DE-LATE-{i}", reading_ts="2026-10-12T00:15:00Z")) for i in range(3)]
    produce(
        [f"DE-LATE-{i}".encode() for i in range(3)],
        late,
        topic,
        kafka.producer_config({"bootstrap.servers": broker["bootstrap"]}),
    )
    produced = sim.counts["messages"] + len(late)

    # An earlier attempt died after writing its first batch of partition 0, before committing.
    config = kafka.consumer_config({"bootstrap.servers": broker["bootstrap"]}, group_id=group)
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH, json.dumps(config), topic, "0"], capture_output=True, text=True, timeout=120
    )
    assert crashed.returncode == 17, crashed.stderr[-2000:]

    ensure_db(settings)
    first_log = metrify_home / "logs" / "first.log"
    assert dags_test("ingest_meter_readings", first_log, settings, connection), first_log.read_text()[-4000:]
    root = lake.lake_root(settings)
    rows, distinct, quarantined = _state(root)
    assert rows + quarantined == produced, "messages != raw rows + quarantined rows"
    assert rows == distinct, "a message landed twice"
    assert quarantined == sim.counts["poison_messages"] + len(late)
    log_text = first_log.read_text()
    assert "replaying uncommitted batch" in log_text
    assert "micro-batch reconciled" in log_text

    second_log = metrify_home / "logs" / "second.log"
    assert dags_test("ingest_meter_readings", second_log, settings, connection), second_log.read_text()[-4000:]
    assert _state(root) == (rows, distinct, quarantined), "a second run changed the lake"
    # one on-call alert for the run that quarantined too-late readings, none for the second
    alerts = [json.loads(line) for line in (metrify_home / "alerts.log").read_text().splitlines()]
    (alert,) = [a for a in alerts if a["kind"] == "too-late readings quarantined"]
    assert alert["dag_id"] == "ingest_meter_readings" and alert["task_id"] == "reconcile" and alert["run_id"]
    assert alert["error"].startswith("3 reading(s) older than the ") and alert["runbook"].endswith("#too-late-readings")

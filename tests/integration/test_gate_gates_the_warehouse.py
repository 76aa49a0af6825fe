"""The real chain under Airflow: ingest -> quality gate -> transform, with one hour that fails a
critical expectation and hours that pass. The blocked hour never reaches staging or the facts
and shows as blocked in the gate's mart; an operator's release brings it in.

Six `airflow dags test` runs (each ~15-30 s of process start-up, plus Great Expectations and dbt).
"""

from __future__ import annotations

import json
import uuid
import zlib
from datetime import UTC, datetime

import pandas as pd
import pytest

from metrify import lake
from metrify.config import load_settings
from metrify.ingest import kafka
from metrify.warehouse import duckdb_loader
from metrify_dev.airflow_env import dags_test, ensure_db
from metrify_dev.postgres import seed_registry, stop_registry_db
from metrify_dev.simulator import SimulationOptions, produce, simulate

pytestmark = pytest.mark.airflow

DAY = "2026-11-16"
BLOCKED_HOUR = 1


def _messages_with_a_broken_hour(meters: int) -> tuple[pd.DataFrame, list[bytes], list[bytes]]:
    """Three clean hours, except 10 % of the readings closing in hour 01 report 400 V (above the
    physical bound; a broken firmware, not a grid event)."""
    sim = simulate(
        SimulationOptions(
            meters=meters, start=datetime(2026, 11, 16, tzinfo=UTC), end=datetime(2026, 11, 16, 3, tzinfo=UTC), seed=5
        )
    )
    values = []
    for value in sim.values:
        reading = json.loads(value)
        ts = pd.Timestamp(reading["reading_ts"])
        if ts.hour == BLOCKED_HOUR and zlib.crc32(reading["meter_id"].encode()) % 10 == 0:
            reading["voltage"] = 400.0
        values.append(json.dumps(reading).encode())
    return sim.registry, sim.keys, values


def _in_staging(where: str) -> int:
    with duckdb_loader.connect_duckdb() as conn:
        return conn.execute(f"select count(*) from staging.stg_meter_readings where {where}").fetchone()[0]


def _verdict(hour: int) -> tuple:
    with duckdb_loader.connect_duckdb() as conn:
        return conn.execute(
            "select status, failed_expectations, released_by from marts.quality_gate_intervals "
            f"where dataset = 'meter_readings' and interval_date = date '{DAY}' and interval_hour = {hour}"
        ).fetchone()


def test_a_blocked_hour_never_reaches_the_warehouse_until_released(
    broker, metrify_home, dbt_manifest, monkeypatch
) -> None:
    monkeypatch.setenv("METRIFY_METER_TOPIC", f"meter-readings-gate-{uuid.uuid4().hex[:6]}")
    monkeypatch.setenv("METRIFY_CONSUMER_GROUP", f"metrify-gate-{uuid.uuid4().hex[:6]}")
    monkeypatch.setenv("METRIFY_TASK_RETRIES", "0")
    settings = load_settings()
    extra = {"bootstrap.servers": broker["bootstrap"]}
    connections = {settings.kafka_conn_id: {"conn_type": "kafka", "extra": extra}}
    registry, keys, values = _messages_with_a_broken_hour(meters=60)
    produce(keys, values, settings.meter_topic, kafka.producer_config(extra))
    seed_registry(registry, settings)
    ensure_db(settings)
    logs = metrify_home / "logs"
    try:
        assert dags_test("ingest_meter_readings", logs / "ingest.log", settings, connections)
        # the gate blocks hour 01 (the run fails, naming it) and passes the others
        assert not dags_test("quality_meter_readings", logs / "quality.log", settings, connections)
        quality_log = (logs / "quality.log").read_text()
        assert f"quality gate FAILED for meter_readings interval {DAY} hour 01" in quality_log
        assert dags_test("transform", logs / "transform.log", settings, connections), (
            logs / "transform.log"
        ).read_text()[-4000:]
        blocked = f"reading_ts >= timestamp '{DAY} 01:00:00' and reading_ts < timestamp '{DAY} 02:00:00'"
        assert _in_staging(blocked) == 0, "readings of the blocked hour reached staging"
        passed = lake.count_rows(lake.lake_root(settings) / "validated" / "meter_readings")
        assert passed > 0 and _in_staging("true") == passed  # every validated reading, nothing else
        with duckdb_loader.connect_duckdb() as conn:
            in_facts = conn.execute("select sum(reading_count) from marts.fct_meter_readings_hourly").fetchone()[0]
        assert in_facts == passed
        status, failed, _ = _verdict(BLOCKED_HOUR)
        assert status == "blocked" and "expect_column_values_to_be_between(voltage)" in failed
        assert _verdict(0)[0] == "passed"

        # an operator checked the data and releases the hour
        release = {
            "dataset": "meter_readings",
            "date": DAY,
            "hour": BLOCKED_HOUR,
            "reason": "checked with the metering team: 400 V is a firmware display bug",
        }
        assert dags_test(
            "release_quality_interval",
            logs / "release.log",
            settings,
            connections,
            extra_args=("-c", json.dumps(release)),
        ), (logs / "release.log").read_text()[-4000:]
        rejudge = {"intervals": [{"date": DAY, "hour": BLOCKED_HOUR}]}  # what the release triggered
        assert dags_test(
            "quality_meter_readings",
            logs / "rejudge.log",
            settings,
            connections,
            extra_args=("-c", json.dumps(rejudge)),
        ), (logs / "rejudge.log").read_text()[-4000:]
        assert dags_test("transform", logs / "transform2.log", settings, connections)
    finally:
        stop_registry_db(settings)
    released = _in_staging(blocked)
    assert released > 0 and _in_staging("voltage > 300") == 0  # the row-level quarantine still applies
    status, failed, released_by = _verdict(BLOCKED_HOUR)
    assert status == "released" and released_by

"""The quality DAG under Airflow (one `airflow dags test` run): a good hour passes the gate and
updates the validated asset, a broken hour is blocked, anomalies are detected for the day anyway.

The gate's and the detectors' logic is covered as plain functions in tests/unit/.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from metrify import lake
from metrify.config import load_settings
from metrify.contracts import readings
from metrify.quality import gate, scores
from metrify.quality import summary as quality_summary
from metrify_dev.airflow_env import dags_test, ensure_db
from metrify_dev.bench.quality import raw_frame
from metrify_dev.simulator import SimulationOptions, simulate

pytestmark = pytest.mark.airflow


def test_quality_dag_gates_each_hour_and_detects_anomalies(metrify_home) -> None:
    settings = load_settings()
    root = lake.lake_root(settings)
    sim = simulate(SimulationOptions(meters=120, start=datetime(2026, 11, 16, tzinfo=UTC), seed=8, anomaly_rate=0.3))
    frame = raw_frame(sim)
    frame["kafka_ts"] = frame["kafka_ts"].astype("datetime64[ms, UTC]")
    hours = {}
    for hour in (5, 6):
        start, end = gate.interval_bounds("2026-11-16", hour)
        hours[hour] = frame[(frame["reading_ts"] >= start) & (frame["reading_ts"] < end)].reset_index(drop=True)
    good = hours[5]
    # hour 05 is the good hour: drop the simulator's own negative readings there (its anomaly
    # injection lands some in any hour), so only the deliberate fault below blocks an hour
    hours[5] = good[good["consumption_kwh"] >= 0].reset_index(drop=True)
    broken = hours[6]
    rows = np.random.default_rng(1).choice(len(broken), 25, replace=False)
    broken.loc[rows, "consumption_kwh"] = -0.25  # 5 % impossible imports: a firmware fault, block it
    for hour, part in hours.items():
        table = pa.Table.from_pandas(part, preserve_index=False).cast(readings.RAW_SCHEMA)
        lake.write_parquet(table, gate.raw_partition(root, "2026-11-16", hour) / "meter-readings+0+0-1.parquet")

    ensure_db(settings)
    log_path = metrify_home / "logs" / "gate.log"
    succeeded = dags_test("quality_meter_readings", log_path, settings)
    log_text = log_path.read_text(errors="replace")
    assert not succeeded, "a run with a blocked interval must fail"
    assert "quality gate FAILED for meter_readings interval 2026-11-16 hour 06" in log_text, log_text[-4000:]
    assert "expect_column_values_to_be_between on column consumption_kwh" in log_text
    alerts = [json.loads(line) for line in (metrify_home / "alerts.log").read_text().splitlines()]
    gate_alerts = [a for a in alerts if a["task_id"] == "gate"]
    assert len(gate_alerts) == 1, "one alert, no retries, for the blocked hour"
    assert "quality gate FAILED" in gate_alerts[0]["error"] and "consumption_kwh" in gate_alerts[0]["error"]

    validated = lake.read_table(root / "validated" / "meter_readings").to_pandas()
    assert set(validated["reading_ts"].dt.hour) == {5}, "only the good hour may reach validated/"
    quarantined = lake.read_table(
        root / "quarantine" / quality_summary.QUARANTINE_DATASET / "date=2026-11-16" / "hour=06"
    ).to_pandas()
    assert (quarantined["consumption_kwh"] < 0).sum() == (broken["consumption_kwh"] < 0).sum()
    markers = {h: lake.read_json(gate.marker_path(root, "2026-11-16", h)) for h in (5, 6)}
    assert markers[5]["passed"] is True and markers[6]["passed"] is False

    # the anomaly task ran although a gate failed (trigger rule all_done)
    found = lake.read_table(root / "anomalies" / "meter_readings" / "date=2026-11-16").to_pandas()
    assert (found["anomaly_type"] == "negative_consumption").sum() >= 25
    assert lake.count_rows(root / "quality" / scores.SCORE_DATASET) > 0

    # the validated asset got exactly one event: the hour that passed
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{settings.airflow_home / 'airflow.db'}")
    with engine.connect() as connection:
        events = connection.execute(
            text(
                "select e.extra from asset_event e join asset a on a.id = e.asset_id "
                "where a.uri = 'metrify://lake/validated/meter_readings'"
            )
        ).fetchall()
    assert len(events) == 1
    # the contract, on the payload the gate really emitted: the transform's reading of it
    from types import SimpleNamespace

    from metrify.assets import VALIDATED_METER_READINGS
    from metrify.warehouse.tasks import validated_intervals

    (interval,) = validated_intervals({VALIDATED_METER_READINGS: [SimpleNamespace(extra=json.loads(events[0][0]))]})
    assert (interval.dataset, interval.date, interval.hour, interval.status) == (
        "meter_readings",
        "2026-11-16",
        5,
        "passed",
    )
    validated_rows = lake.count_rows(root / "validated" / readings.DATASET / "date=2026-11-16" / "hour=05")
    assert interval.rows == validated_rows > 0

"""A meter the registry does not know yet (a new installation the registry has not caught up
with): its readings are kept, it is in dim_meters as `unregistered`, the run succeeds, counts it
and alerts once; when the registry catches up the meter gets its attributes, without a second
alert (DuckDB, the whole dbt project, the warehouse task `report`)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd

from metrify import lake, redaction
from metrify.config import environ_overrides
from metrify.quality.verdicts import read_verdicts
from metrify.warehouse import dbt_runner, duckdb_loader
from metrify.warehouse import tasks as warehouse_tasks
from metrify_dev import sample_lake as wd

DAY_ONE, DAY_TWO = date(2026, 3, 28), date(2026, 3, 29)


def query(sql: str) -> list[tuple]:
    with duckdb_loader.connect_duckdb() as conn:
        return conn.execute(sql).fetchall()


def alerts(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def build(target: Path) -> dbt_runner.DbtResult:
    result = dbt_runner.run_dbt(["build"], target_path=target)
    assert result.success, result.failures
    return result


def test_a_meter_the_registry_learns_a_day_late(warehouse_home, tmp_path_factory):
    root = lake.lake_root()
    data = wd.build_lake(root, meters=6, days=2, seed=3)
    new = data.registry["meter_id"].iloc[-1]  # installed, reading, not yet in the registry
    lagging_registry = data.registry[data.registry["meter_id"] != new]
    target = tmp_path_factory.mktemp("dbt-target")
    alert_log = warehouse_home / "unregistered-alerts.log"
    first_reading = data.readings.loc[data.readings["meter_id"] == new, "reading_ts"].min()
    assert pd.Timestamp(first_reading).date() == DAY_ONE

    with environ_overrides({"METRIFY_ALERT_LOG": str(alert_log), "METRIFY_ALERT_WEBHOOK_URL": None}):
        # day one: the meter's readings arrive, the registry does not know it
        duckdb_loader.sync(days=[DAY_ONE])
        duckdb_loader.load_verdicts_duckdb(read_verdicts(root).to_pandas())
        duckdb_loader.load_registry_duckdb(lagging_registry)
        build(target)  # relationships hold: the run succeeds
        assert query(
            "select status, is_registered, load_profile, region, grid_operator, first_seen_at "
            f"from marts.dim_meters where meter_id = '{new}'"
        ) == [("unregistered", False, None, None, None, first_reading.tz_convert("UTC").tz_localize(None))]
        readings_day_one = query(
            f"select sum(reading_count) from marts.fct_meter_readings_hourly where meter_id = '{new}'"
        )
        assert readings_day_one[0][0] > 0  # the facts keep its readings
        first = warehouse_tasks.report()
        assert first["unregistered_meters"] == {"meters": 1, "readings": readings_day_one[0][0], "newly_alerted": [new]}
        sent = alerts(alert_log)
        assert len(sent) == 1 and sent[0]["kind"] == "meters not in the registry"
        assert sent[0]["runbook"].endswith("#meter-not-in-the-registry")
        # the alert names the meter by its pseudonym only (README, Security)
        assert redaction.pseudonym(new) in sent[0]["error"] and new not in json.dumps(sent[0])
        # the same state reported again (e.g. the next hourly run): counted, not alerted again
        assert warehouse_tasks.report()["unregistered_meters"]["newly_alerted"] == []
        assert len(alerts(alert_log)) == 1
        # regional analytics leave the unregistered meter out (it has no region yet)
        analytics_before = query("select sum(reading_count) from marts.fct_smart_meter_analytics")[0][0]
        fact_total = query("select sum(reading_count) from marts.fct_meter_readings_hourly")[0][0]
        assert analytics_before == fact_total - readings_day_one[0][0]

        # day two: more readings, and the registry has caught up
        duckdb_loader.sync(days=[DAY_TWO])
        duckdb_loader.load_registry_duckdb(data.registry)
        build(target)
        expected = data.registry.set_index("meter_id").loc[new]
        row = query(
            "select status, is_registered, load_profile, region, grid_operator, first_seen_at, "
            f"registry_caught_up_at is not null from marts.dim_meters where meter_id = '{new}'"
        )
        assert row == [
            (
                str(expected["status"]).lower(),
                True,
                expected["load_profile"],
                expected["region"],
                expected["grid_operator"],
                first_reading.tz_convert("UTC").tz_localize(None),
                True,
            )
        ]
        second = warehouse_tasks.report()
        assert second["unregistered_meters"] == {"meters": 0, "readings": 0, "newly_alerted": []}
        assert len(alerts(alert_log)) == 1  # alerted once per meter, not once per run
        # the daily metrics and the regional analytics now count the meter in its region,
        # including the hours of day one (recomputed when the registry caught up)
        assert query("select count(*) from marts.dim_meters where status = 'unregistered'") == [(0,)]
        assert query("select sum(reading_count) from marts.fct_smart_meter_analytics") == query(
            "select sum(reading_count) from marts.fct_meter_readings_hourly"
        )
        assert query("select count(*) from metrics.daily_consumption_metrics where region is null") == [(0,)]

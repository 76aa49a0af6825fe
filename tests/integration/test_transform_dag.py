"""One Airflow run of the `transform` DAG: lake -> DuckDB raw -> dbt models and tests as
Cosmos tasks, with the registry served by the embedded PostgreSQL."""

from __future__ import annotations

import pytest

from metrify import lake
from metrify.warehouse import duckdb_loader
from metrify_dev import airflow_env, postgres
from metrify_dev import sample_lake as wd
from tests.integration.oracles import expected_hourly


@pytest.mark.airflow
def test_transform_dag_builds_the_warehouse(warehouse_home, dbt_manifest):
    data = wd.build_lake(lake.lake_root(), meters=10, days=1)
    connections = airflow_env.duckdb_connection()
    connections["postgres_default"] = postgres.seed_registry(data.registry)
    try:
        airflow_env.ensure_db()
        result = airflow_env.airflow(
            "dags", "test", "transform", extra_connections=connections, check=False, capture=True
        )
        log = result.stdout + result.stderr
        assert result.returncode == 0, log[-5000:]
    finally:
        postgres.stop_registry_db()
    counts = duckdb_loader.summary()
    assert set(data.verdicts.values()) == {"passed"}
    assert counts["raw.meter_readings"] == len(data.readings.drop_duplicates(["meter_id", "reading_ts"]))
    assert counts["raw.quality_verdicts"] == len(data.verdicts)
    assert counts["marts.dim_meters"] == 10
    for table in (
        "marts.fct_meter_readings_hourly",
        "marts.fct_smart_meter_analytics",
        "marts.fct_grid_status",
        "marts.fct_weather_hourly",
        "staging.stg_meter_readings",
    ):
        assert counts[table] > 0, table
    assert "metrics.daily_consumption_metrics" not in counts  # the daily DAG builds the metrics
    expected = expected_hourly(data.readings)
    with duckdb_loader.connect_duckdb() as conn:
        fact = conn.execute(
            "select sum(reading_count), sum(consumption_kwh) from marts.fct_meter_readings_hourly"
        ).fetchone()
    assert fact[0] == expected["readings"].sum()
    assert fact[1] == pytest.approx(expected["consumption_kwh"].sum(), abs=1e-9)

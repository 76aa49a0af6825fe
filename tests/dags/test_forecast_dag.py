"""The forecast_load DAG: daily after warehouse_daily, one task feeding LOAD_FORECAST, docs for on-call."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pendulum
import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
# the models the forecast models read (readings, registry), as warehouse_daily builds them
BUILD_PARENTS = (
    "from metrify.warehouse.dbt_runner import run_dbt\n"
    "result = run_dbt(['run', '--select', '+tag:forecast', '--exclude', 'tag:forecast'])\n"
    "assert result.success, result.failures"
)


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / "forecast_load.py"))
    assert not bag.import_errors
    return bag.dags["forecast_load"]


def test_runs_daily_after_warehouse_daily_and_forecasts_the_next_day(dag) -> None:
    from metrify.forecast.tasks import target_day

    assert dag.timetable.expression == "30 4 * * *", "after warehouse_daily (02:30) and its 2 h deadline"
    assert str(getattr(dag.timetable.timezone, "name", dag.timetable.timezone)) == "Europe/Berlin"
    due = pendulum.datetime(2026, 11, 27, 4, 30, tz="Europe/Berlin")  # a cron run's interval is the instant it is due
    assert str(target_day(due, due)) == "2026-11-28", "the run on the 27th forecasts the 28th"


def test_the_forecast_feeds_the_asset_then_the_warehouse_loads_and_builds_it(dag) -> None:
    from metrify.warehouse import cosmos_config

    assert [a.uri for a in dag.get_task("forecast").outlets] == ["metrify://lake/forecast/load_forecast"]
    assert dag.get_task("load_warehouse").upstream_task_ids == {"forecast"}
    dbt_tasks = {t.task_id for t in dag.tasks if t.task_id.startswith("dbt_forecast.")}
    models = {task_id.split(".")[1] for task_id in dbt_tasks}
    assert {"stg_load_forecast", "fct_load_forecast", "forecast_accuracy_daily"} <= models, dbt_tasks
    assert not models & {"stg_meter_readings", "fct_meter_readings_hourly", "dim_meters"}, "forecast models only"
    # every task that writes the warehouse queues in its pool (DuckDB: one writer at a time)
    for task in dag.tasks:
        if task.task_id == "load_warehouse" or task.task_id.rsplit(".", 1)[-1] in (
            "run",
            "test",
            "dbt_producer_watcher",
        ):
            assert task.pool == cosmos_config.pool(), task.task_id


def test_docs_tell_on_call_where_the_plot_is_and_what_a_fallback_means(dag) -> None:
    doc = dag.doc_md
    assert "forecast/plots/date=" in doc and "load_forecast.png" in doc
    assert "fallback_last_week" in doc and "FALLBACK" in doc and "On failure" in doc
    assert "fct_load_forecast" in doc and "forecast_accuracy_daily" in doc


@pytest.mark.airflow
def test_a_run_lands_the_forecast_in_the_warehouse(metrify_home, dbt_manifest) -> None:
    """`airflow dags test forecast_load` on 12 seeded days of history: the forecast for the last
    history day lands in marts.fct_load_forecast for every region and control area and is
    measured against that day's readings in metrics.forecast_accuracy_daily."""
    from datetime import UTC, date, datetime

    from metrify import lake
    from metrify.forecast.tasks import run_logical_date
    from metrify.warehouse import duckdb_loader, registry
    from metrify_dev import airflow_env, postgres
    from metrify_dev.history import seed_history
    from metrify_dev.simulator import SimulationOptions

    window = SimulationOptions(meters=8, start=datetime(2026, 3, 12, tzinfo=UTC), seed=3)
    seeded = seed_history(lake.lake_root(), window, days=12)
    day = date(2026, 3, 11)  # the last seeded day: 10 days of history before it, enough for the fallback
    uri = postgres.start_registry_db()
    try:
        postgres.write_registry(seeded.registry, uri)
        rows = registry.read_registry(uri)
        # the readings' models the accuracy metric reads, built as warehouse_daily would have
        duckdb_loader.sync()
        duckdb_loader.load_registry_duckdb(rows)
        # in a process of its own: dbt-duckdb keeps the file open, and DuckDB lets one process write
        built = subprocess.run(
            [sys.executable, "-c", BUILD_PARENTS], capture_output=True, text=True, env={**os.environ}, check=False
        )
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
        connections = {**airflow_env.duckdb_connection(), "postgres_default": postgres.registry_connection(uri)}
        airflow_env.ensure_db()
        log = metrify_home / "forecast_load.log"
        ok = airflow_env.dags_test(
            "forecast_load", log, extra_connections=connections, extra_args=(run_logical_date(day),)
        )
        assert ok, log.read_text(errors="replace")[-5000:]
    finally:
        postgres.stop_registry_db()
    series = {("region", r) for r in rows["region"]} | {("control_area", g) for g in rows["grid_operator"]}
    with duckdb_loader.connect_duckdb() as conn:
        landed = conn.execute(
            "select series_kind, series, count(*), min(target_date) from marts.fct_load_forecast group by 1, 2"
        ).fetchall()
        accuracy = conn.execute(
            "select series_kind, series, quarter_hours_compared from metrics.forecast_accuracy_daily"
        ).fetchall()
    assert {(k, s) for k, s, _, _ in landed} == series
    assert {(n, d) for _, _, n, d in landed} == {(96, day)}
    assert {(k, s) for k, s, _ in accuracy} == series and {n for _, _, n in accuracy} == {96}

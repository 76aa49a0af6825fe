"""Daily warehouse run: fill the missing quarter-hours of the business day that just ended with
flagged substitute values (`substituted/meter_readings/`), re-load that day's lake intervals
(the run due at 02:30 Europe/Berlin on day D rebuilds day D - 1; each load replaces its
interval), then build the whole dbt project including the daily metrics. Backfilling this DAG over a date range
(UI, or `airflow backfill create --dag-id warehouse_daily --from-date ... --to-date ...
--max-active-runs 1`; the dates select the runs' logical dates) rebuilds those days identically.

On failure: a failed dbt model or test is one task; read its log, fix, clear that task only
(RUNBOOK.md, section *Warehouse load failed*).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from metrify.assets import WAREHOUSE_METRICS
from metrify.oncall.defaults import deadline, default_args
from metrify.warehouse import cosmos_config
from metrify.warehouse.wiring import build_warehouse


@dag(
    dag_id="warehouse_daily",
    schedule="30 2 * * *",  # after the Europe/Berlin business day is complete and late data settled
    start_date=pendulum.datetime(2026, 1, 1, tz="Europe/Berlin"),
    catchup=False,
    max_active_runs=1,
    max_active_tasks=cosmos_config.max_active_tasks(),
    default_args=default_args(
        execution_timeout=timedelta(minutes=60), retry_delay=timedelta(minutes=1), pool=cosmos_config.pool()
    ),
    deadline=deadline(timedelta(minutes=120), "warehouse_daily"),
    tags=["metrify", "warehouse", "dbt", "cosmos", "metrics"],
    doc_md=__doc__,
)
def warehouse_daily():
    @task
    def substitute_gaps(data_interval_start=None, data_interval_end=None) -> dict:
        """Fill the rebuilt business day's missing quarter-hours with flagged substitute values
        (substituted/meter_readings/date=<day>/; blocked hours stay unfilled, counts in the log)."""
        from metrify.warehouse.tasks import substitute_business_days

        return substitute_business_days(data_interval_start, data_interval_end)

    @task
    def reload_day(data_interval_start=None, data_interval_end=None) -> dict:
        """Replace the lake dates of the business day this run rebuilds (the Europe/Berlin day
        before the run's date) in the warehouse's raw schema."""
        from metrify.warehouse.tasks import reload_business_day

        return reload_business_day(data_interval_start, data_interval_end)

    lake_load = reload_day()
    substitute_gaps() >> lake_load
    build_warehouse(lake_load, hourly=False, outlet=WAREHOUSE_METRICS)


warehouse_daily()

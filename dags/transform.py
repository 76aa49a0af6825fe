"""Warehouse transform: load the lake into the warehouse, then build staging and marts with dbt.

Runs whenever the quality gate validates an interval (meter readings, grid status, weather):
the warehouse reads `validated/` only, so an interval the gate blocked never reaches it. Each dbt
model is a task group (run, then its tests) rendered by Cosmos from the dbt manifest, so one
model can be retried.

On failure: a failed dbt model or test is one task; read its log, fix, clear that task only
(RUNBOOK.md, section *Warehouse load failed*).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from metrify.assets import VALIDATED_GRID_STATUS, VALIDATED_METER_READINGS, VALIDATED_WEATHER, WAREHOUSE_MARTS
from metrify.oncall.defaults import deadline, default_args
from metrify.warehouse import cosmos_config
from metrify.warehouse.wiring import build_warehouse


@dag(
    dag_id="transform",
    schedule=(VALIDATED_METER_READINGS | VALIDATED_GRID_STATUS | VALIDATED_WEATHER),
    catchup=False,
    max_active_runs=1,
    max_active_tasks=cosmos_config.max_active_tasks(),
    default_args=default_args(
        execution_timeout=timedelta(minutes=30), retry_delay=timedelta(seconds=30), pool=cosmos_config.pool()
    ),
    deadline=deadline(timedelta(minutes=60), "transform"),
    tags=["metrify", "warehouse", "dbt", "cosmos"],
    doc_md=__doc__,
)
def transform_dag():
    @task
    def load_lake(triggering_asset_events=None) -> dict:
        """Load the validated intervals that changed into the warehouse's raw schema; every
        interval the triggering gate events announce must be loaded."""
        from metrify.warehouse.tasks import load_changed_lake

        return load_changed_lake(triggering_asset_events)

    build_warehouse(load_lake(), hourly=True, outlet=WAREHOUSE_MARTS)


transform_dag()

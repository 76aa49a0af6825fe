"""Warehouse transform: load the lake into the warehouse, then build staging and marts with dbt.

Runs whenever ingestion or the quality gate updates an asset. Each dbt model is a task group
(run, then its tests) rendered by Cosmos from the dbt manifest, so one model can be retried.

On failure: a failed dbt model or test is one task; read its log, fix, clear that task only
(RUNBOOK.md, section *Warehouse load failed*).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Asset, dag, task
from cosmos import DbtTaskGroup

from metrify import transform
from metrify.dag_defaults import deadline, default_args

VALIDATED_READINGS = Asset("metrify://lake/validated/meter_readings")
GRID_STATUS = Asset("metrify://lake/raw/grid_status")
WEATHER = Asset("metrify://lake/raw/weather")
WAREHOUSE_MARTS = Asset("metrify://warehouse/marts")


@dag(
    dag_id="transform",
    schedule=(VALIDATED_READINGS | GRID_STATUS | WEATHER),
    catchup=False,
    max_active_runs=1,
    max_active_tasks=transform.max_active_tasks(),
    default_args=default_args(execution_timeout=timedelta(minutes=30), retry_delay=timedelta(seconds=30),
                              pool=transform.pool()),
    deadline=deadline(timedelta(minutes=60), "transform"),
    tags=["metrify", "warehouse", "dbt", "cosmos"],
    doc_md=__doc__,
)
def transform_dag():
    @task
    def load_lake(triggering_asset_events=None) -> dict:
        """Load every lake interval that changed into the warehouse's raw schema (meter readings:
        only the intervals the quality gate validated, when its asset event lists them)."""
        from metrify import warehouse

        validated = warehouse.validated_intervals(triggering_asset_events)
        return warehouse.load_lake_for_transform(validated=validated)

    @task
    def load_registry() -> int:
        """Copy the meter registry from PostgreSQL (postgres_default) into the warehouse."""
        from metrify import warehouse

        return warehouse.load_registry_for_transform()

    dbt = DbtTaskGroup(
        group_id="dbt",
        project_config=transform.project_config(),
        profile_config=transform.profile_config(),
        execution_config=transform.execution_config(),
        render_config=transform.render_config(exclude=["path:models/metrics"]),
        operator_args=transform.operator_args(hourly=True),
    )

    transform.producer_first(dbt)  # WATCHER mode only (METRIFY_DBT_EXECUTION_MODE)

    @task(outlets=[WAREHOUSE_MARTS])
    def report() -> dict:
        """Row counts of what the warehouse holds now (DuckDB)."""
        from metrify import warehouse

        return warehouse.summary() if warehouse.warehouse_target() == "duckdb" else {}

    [load_lake(), load_registry()] >> dbt >> report()


transform_dag()

"""What both warehouse DAGs wire the same way, after their own lake load.

`transform` (hourly, asset-scheduled) and `warehouse_daily` differ in what they load from the
lake; from there on both copy the registry, build the dbt project through Cosmos and report.
"""

from __future__ import annotations

from typing import Any

from metrify.warehouse.cosmos_config import dbt_task_group


def build_warehouse(lake_load: Any, hourly: bool, outlet: Any) -> None:
    """[`lake_load`, registry copy] >> dbt (Cosmos task group) >> report (updates `outlet`)."""
    from airflow.sdk import task

    @task
    def load_registry() -> int:
        """Copy the meter registry from PostgreSQL (postgres_default) into the warehouse."""
        from metrify.warehouse.tasks import load_registry_for_transform

        return load_registry_for_transform()

    @task(outlets=[outlet])
    def report(**context: Any) -> dict[str, Any]:
        """Row counts of what the warehouse holds now (DuckDB), and the meters the registry does
        not know yet (counted; each alerted once)."""
        from metrify.warehouse.tasks import report as warehouse_report

        return warehouse_report(context)

    [lake_load, load_registry()] >> dbt_task_group(hourly) >> report()

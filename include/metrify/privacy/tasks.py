"""Task bodies of the privacy DAGs (`erase_meter`, `apply_retention`): plain functions.

Light to import (the DAG files import this module at parse time): everything heavy is
imported inside the functions.
"""

from __future__ import annotations

import logging
from typing import Any

from metrify import redaction, validate
from metrify.config import Settings, load_settings

log = logging.getLogger(__name__)


def warehouse_pool() -> str:
    """The erasure writes to the warehouse: it queues in the warehouse's pool (one slot for DuckDB)."""
    return load_settings().warehouse_pool


def meter_id_from_conf(params: dict[str, Any] | None, conf: dict[str, Any] | None) -> str:
    """The meter id of a manual `erase_meter` run (its conf, else its params), checked."""
    given = (conf or {}).get("meter_id") or (params or {}).get("meter_id")
    if not given:
        raise ValueError('erase_meter needs the meter id in the run\'s conf: {"meter_id": "DE000..."}')
    try:
        return validate.meter_id(given, "meter_id")
    except ValueError as exc:
        raise ValueError(f"erase_meter refused the run's conf: {exc}; nothing was erased") from None


def erase(meter_id: str, requested_by: str, run_id: str | None, erase_in_registry: bool = True) -> dict[str, Any]:
    """`erase_meter`: erase the meter from the lake, the warehouse (DuckDB, or Snowflake through
    its connection) and the operational registry (PostgreSQL, through its connection); returns the
    audit record (the meter by its pseudonym only)."""
    settings = load_settings()
    meter_id = validate.meter_id(meter_id, "meter_id")
    try:
        return _erase(meter_id, requested_by, run_id, erase_in_registry, settings)
    except Exception as exc:
        raise RuntimeError(
            f"erasure of meter {redaction.pseudonym(meter_id, settings)} failed: {type(exc).__name__}: {exc}. "
            "What was erased before the failure stays erased; fix the cause and clear the task (erasing again "
            "is safe); see RUNBOOK.md#erasure-and-retention"
        ) from exc


def _erase(
    meter_id: str, requested_by: str, run_id: str | None, erase_in_registry: bool, settings: Settings
) -> dict[str, Any]:
    from metrify.privacy.erasure import erase_meter

    registry_conn = None
    if erase_in_registry:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        redaction.register_connection(settings.registry_conn_id)  # its password reaches no log or alert
        registry_conn = PostgresHook(postgres_conn_id=settings.registry_conn_id).get_conn()
    try:
        registry_cursor = registry_conn.cursor() if registry_conn is not None else None
        if settings.warehouse_target == "snowflake":
            from metrify.warehouse.snowflake_loader import snowflake_cursor

            with snowflake_cursor(settings.snowflake_conn_id) as cursor:
                report = erase_meter(
                    meter_id,
                    requested_by=requested_by,
                    run_id=run_id,
                    settings=settings,
                    warehouse=cursor,
                    warehouse_placeholder="%s",
                    registry_cursor=registry_cursor,
                )
        else:
            report = erase_meter(
                meter_id, requested_by=requested_by, run_id=run_id, settings=settings, registry_cursor=registry_cursor
            )
        if registry_conn is not None:
            registry_conn.commit()
    finally:
        if registry_conn is not None:
            registry_conn.close()
    return report.as_dict()


def retention() -> dict[str, Any]:
    """`apply_retention`: remove the lake partitions past each layer's retention."""
    from metrify.privacy.retention import apply_retention

    try:
        return apply_retention().as_dict()
    except Exception as exc:
        raise RuntimeError(
            f"lake retention failed: {type(exc).__name__}: {exc}. Partitions removed before the failure are "
            "listed in the task log; clear the task to finish; see RUNBOOK.md#erasure-and-retention"
        ) from exc

"""Task bodies of the warehouse DAGs (`transform`, `warehouse_daily`): plain functions.

The target is `METRIFY_WAREHOUSE_TARGET`: `duckdb` (embedded) or `snowflake` (production), each
reached through its Airflow connection.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date as Date
from typing import Any

from metrify import lake
from metrify.assets import VALIDATED_METER_READINGS
from metrify.config import Settings, load_settings
from metrify.warehouse.business_calendar import daily_run_days
from metrify.warehouse.catalog import REGISTRY_TABLE, SOURCES, Interval
from metrify.warehouse.duckdb_loader import load_registry_duckdb, summary, sync
from metrify.warehouse.registry import read_registry
from metrify.warehouse.snowflake_loader import load_registry_snowflake, sync_snowflake

log = logging.getLogger(__name__)


def validated_intervals(triggering_asset_events: Any) -> list[Interval] | None:
    """Meter-reading intervals the quality gate passed, from the `extra["intervals"]` of the
    validated meter-readings events that triggered the run (None: no event says, so every
    changed interval is loaded)."""
    if not triggering_asset_events:
        return None
    found: list[Interval] = []
    said = False
    for asset, events in dict(triggering_asset_events).items():
        if getattr(asset, "uri", getattr(asset, "name", str(asset))) != VALIDATED_METER_READINGS.uri:
            continue
        for event in events:
            extra = getattr(event, "extra", None) or {}
            if "intervals" in extra:
                said = True
                found.extend(Interval.parse(text) for text in extra["intervals"])
    return sorted(set(found)) if said else None


def load_lake_for_transform(
    days: Iterable[Date] | None = None, settings: Settings | None = None, validated: Iterable[Interval] | None = None
) -> dict[str, Any]:
    """Load what changed in the lake into the warehouse's raw schema; returns a summary.

    DuckDB: every interval whose files changed (all days, or `days`); meter readings only for
    the `validated` intervals when given. Snowflake: the intervals of `days` (required there:
    COPY INTO from the lake stage, each interval replaced).
    """
    settings = settings or load_settings()
    if settings.warehouse_target == "snowflake":
        if days is None:
            raise ValueError("loading Snowflake needs the days to load (the DAG passes its data interval)")
        from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

        with SnowflakeHook(snowflake_conn_id=settings.snowflake_conn_id).get_conn() as conn:
            report = sync_snowflake(conn.cursor(), lake.lake_root(settings), days=list(days))
    else:
        report = sync(
            settings=settings,
            days=list(days) if days is not None else None,
            intervals=None if validated is None else {"meter_readings": list(validated)},
        )
    result = {
        "intervals_loaded": len(report.loaded),
        "intervals_unchanged": report.unchanged,
        "rows_loaded": report.rows,
        "by_table": {t: sum(r.rows for r in report.loaded if r.table == t) for t in SOURCES},
    }
    log.info("warehouse load: %s", result)
    return result


def load_changed_lake(triggering_asset_events: Any) -> dict[str, Any]:
    """`transform`: load every lake interval that changed (meter readings: only the intervals the
    quality gate validated, when its asset events list them)."""
    return load_lake_for_transform(validated=validated_intervals(triggering_asset_events))


def reload_business_day(data_interval_start: Any, data_interval_end: Any) -> dict[str, Any]:
    """`warehouse_daily`: replace the lake dates of the business day the run rebuilds (the
    Europe/Berlin day before the run's date)."""
    business, utc_days = daily_run_days(data_interval_start, data_interval_end)
    return {"business_days": [str(d) for d in business], **load_lake_for_transform(days=utc_days)}


def load_registry_for_transform(settings: Settings | None = None) -> int:
    """Copy the meter registry from PostgreSQL into the warehouse; returns its rows."""
    settings = settings or load_settings()
    frame = read_registry(conn_id=settings.registry_conn_id)
    if frame.empty:
        raise RuntimeError(
            f"the meter registry in PostgreSQL ({settings.registry_conn_id}, table {REGISTRY_TABLE}) "
            "is empty: dim_meters would be empty and every fact would fail its relationship test"
        )
    if settings.warehouse_target == "snowflake":
        from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

        with SnowflakeHook(snowflake_conn_id=settings.snowflake_conn_id).get_conn() as conn:
            return load_registry_snowflake(conn.cursor(), frame)
    return load_registry_duckdb(frame, settings=settings)


def report() -> dict[str, int]:
    """Row counts of what the warehouse holds now (DuckDB; Snowflake reports nothing here)."""
    return summary() if load_settings().warehouse_target == "duckdb" else {}

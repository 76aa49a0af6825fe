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
from metrify.assets import VALIDATED_GRID_STATUS, VALIDATED_METER_READINGS, VALIDATED_WEATHER
from metrify.config import Settings, load_settings
from metrify.contracts.events import ValidatedInterval
from metrify.quality.verdicts import read_verdicts
from metrify.warehouse.business_calendar import daily_run_days
from metrify.warehouse.catalog import REGISTRY_TABLE, SOURCES
from metrify.warehouse.duckdb_loader import (
    duckdb_session,
    load_registry_duckdb,
    load_verdicts_duckdb,
    scalar,
    summary,
    sync,
)
from metrify.warehouse.registry import read_registry
from metrify.warehouse.snowflake_loader import (
    load_registry_snowflake,
    load_verdicts_snowflake,
    snowflake_cursor,
    sync_snowflake,
)
from metrify.warehouse.unregistered import note_unregistered

log = logging.getLogger(__name__)


def validated_intervals(triggering_asset_events: Any) -> list[ValidatedInterval]:
    """The intervals the quality gate passed or an operator released, from the validated-asset
    events that triggered the run (`metrify.contracts.events`; a malformed event fails here)."""
    validated = {a.uri for a in (VALIDATED_METER_READINGS, VALIDATED_GRID_STATUS, VALIDATED_WEATHER)}
    found: list[ValidatedInterval] = []
    for asset, events in dict(triggering_asset_events or {}).items():
        if getattr(asset, "uri", getattr(asset, "name", str(asset))) not in validated:
            continue
        found += [ValidatedInterval.from_extra(dict(getattr(event, "extra", None) or {})) for event in events]
    return found


def load_lake_for_transform(days: Iterable[Date] | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Load what changed in the lake into the warehouse's raw schema, and the gate's verdicts;
    returns a summary.

    DuckDB: every interval whose files changed (all days, or `days`): new and rewritten
    validated intervals are loaded, an interval whose validated file is gone (blocked since) is
    emptied. Snowflake: the intervals of `days` (required there: COPY INTO from the lake stage,
    each interval replaced).
    """
    settings = settings or load_settings()
    if settings.warehouse_target == "snowflake":
        if days is None:
            raise ValueError("loading Snowflake needs the days to load (the DAG passes its data interval)")
        with snowflake_cursor(settings.snowflake_conn_id) as cursor:
            report = sync_snowflake(cursor, lake.lake_root(settings), days=list(days))
            verdicts = load_verdicts_snowflake(cursor, read_verdicts(lake.lake_root(settings)).to_pandas())
    else:
        report = sync(settings=settings, days=list(days) if days is not None else None)
        verdicts = load_verdicts_duckdb(read_verdicts(lake.lake_root(settings)).to_pandas(), settings=settings)
    result = {
        "intervals_loaded": len(report.loaded),
        "intervals_unchanged": report.unchanged,
        "rows_loaded": report.rows,
        "quality_verdicts": verdicts,
        "by_table": {t: sum(r.rows for r in report.loaded if r.table == t) for t in SOURCES},
    }
    log.info("warehouse load: %s", result)
    return result


def load_changed_lake(triggering_asset_events: Any) -> dict[str, Any]:
    """`transform`: load the validated intervals that changed since the last load.

    The triggering events name the intervals the gate passed or an operator released; each of
    them must be in the warehouse afterwards (else the load fails, naming it). DuckDB syncs every
    changed interval of `validated/` (so an interval blocked since it was loaded is emptied);
    Snowflake loads the days the events name.
    """
    settings = load_settings()
    announced = validated_intervals(triggering_asset_events)
    log.info(
        "validated intervals announced by the gate: %s",
        ", ".join(f"{i.dataset}/{i.partition} ({i.status})" for i in announced) or "none",
    )
    days = sorted({Date.fromisoformat(i.date) for i in announced})
    result = load_lake_for_transform(days=days if settings.warehouse_target == "snowflake" else None, settings=settings)
    if settings.warehouse_target == "duckdb":
        missing = missing_intervals(announced, settings)
        if missing:
            raise RuntimeError(
                "warehouse load failed: the gate announced validated intervals the warehouse does not hold: "
                f"{', '.join(missing)}. Check that validated/ is readable from here; "
                "see RUNBOOK.md#warehouse-load-failed"
            )
    return {**result, "announced": [f"{i.dataset}/{i.partition}" for i in announced]}


def missing_intervals(announced: list[ValidatedInterval], settings: Settings) -> list[str]:
    """Announced intervals whose validated files exist but the DuckDB load log does not hold
    (an interval blocked again since its event has no validated file and is not missing)."""
    missing = []
    root = lake.lake_root(settings)
    with duckdb_session(None, settings) as db:
        for interval in announced:
            if not lake.list_files(root / "validated" / interval.dataset / interval.partition):
                log.warning(
                    "%s/%s was announced but has no validated file any more (blocked since?)",
                    interval.dataset,
                    interval.partition,
                )
                continue
            found = scalar(
                db,
                "SELECT count(*) FROM raw._load_log WHERE source = ? AND interval_date = ? "
                "AND interval_hour IS NOT DISTINCT FROM ? AND files > 0",
                [interval.dataset, Date.fromisoformat(interval.date), interval.hour],
            )
            if not found:
                missing.append(f"{interval.dataset}/{interval.partition}")
    return missing


def reload_business_day(data_interval_start: Any, data_interval_end: Any) -> dict[str, Any]:
    """`warehouse_daily`: replace the lake dates of the business day the run rebuilds (the
    Europe/Berlin day before the run's date)."""
    business, utc_days = daily_run_days(data_interval_start, data_interval_end)
    return {"business_days": [str(d) for d in business], **load_lake_for_transform(days=utc_days)}


def substitute_business_days(data_interval_start: Any, data_interval_end: Any) -> dict[str, Any]:
    """`warehouse_daily`, before the reload: land the substitute values of the business day(s)
    the run rebuilds under `substituted/meter_readings/date=<day>/` (`metrify.substitution.daily`;
    each day's file is replaced, so a rerun or backfill gives the same rows)."""
    from metrify.substitution.daily import substitute_business_day

    settings = load_settings()
    business, _ = daily_run_days(data_interval_start, data_interval_end)
    registry = read_registry(conn_id=settings.registry_conn_id)
    if registry.empty:
        raise RuntimeError(
            f"the meter registry in PostgreSQL ({settings.registry_conn_id}, table {REGISTRY_TABLE}) is empty: "
            "no meter is expected, so no gap could be found; check the registry and its connection"
        )
    return {str(day): substitute_business_day(day, registry, settings) for day in business}


def load_registry_for_transform(settings: Settings | None = None) -> int:
    """Copy the meter registry from PostgreSQL into the warehouse; returns its rows."""
    settings = settings or load_settings()
    frame = read_registry(conn_id=settings.registry_conn_id)
    if frame.empty:
        raise RuntimeError(
            f"the meter registry in PostgreSQL ({settings.registry_conn_id}, table {REGISTRY_TABLE}) "
            "is empty: every meter would count as unregistered; check the registry and its connection"
        )
    if settings.warehouse_target == "snowflake":
        with snowflake_cursor(settings.snowflake_conn_id) as cursor:
            return load_registry_snowflake(cursor, frame)
    return load_registry_duckdb(frame, settings=settings)


def report(context: dict[str, Any] | None = None) -> dict[str, Any]:
    """After a build: row counts of what the warehouse holds (DuckDB; Snowflake reports none
    here) and the meters the registry does not know yet, with their readings, alerting each
    such meter once (`metrify.warehouse.unregistered`); an unknown meter never fails the run."""
    settings = load_settings()
    if settings.warehouse_target == "snowflake":
        with snowflake_cursor(settings.snowflake_conn_id) as cursor:
            unknown = note_unregistered(cursor, "%s", context)
        tables: dict[str, int] = {}
    else:
        with duckdb_session(None, settings) as db:
            unknown = note_unregistered(db, "?", context)
        tables = summary(settings)
    result = {"tables": tables, "unregistered_meters": unknown.as_dict()}
    log.info("warehouse holds: %s", result)
    return result


def load_forecast_day(day: Date, settings: Settings | None = None) -> dict[str, Any]:
    """`forecast_load`: replace the landed forecast of target `day` in `raw.load_forecast`
    (DuckDB or Snowflake, as `load_lake_for_transform` does); returns what it loaded.

    Fails, naming the file, when the forecast task landed nothing for `day` (it always writes a
    file, possibly with no rows, so a missing file means the lake is not where the load looks).
    """
    from metrify.contracts.forecast import LOAD_FORECAST_WAREHOUSE_TABLE

    settings = settings or load_settings()
    source = SOURCES[LOAD_FORECAST_WAREHOUSE_TABLE]
    root = lake.lake_root(settings)
    if not lake.list_files(source.lake_dir(root) / f"date={day:%Y-%m-%d}"):
        raise FileNotFoundError(
            f"no landed load forecast for {day} under {source.lake_dir(root)}/date={day:%Y-%m-%d}/: "
            "the forecast task writes it first; check that it succeeded and that the lake is readable from here"
        )
    if settings.warehouse_target == "snowflake":
        with snowflake_cursor(settings.snowflake_conn_id) as cursor:
            report = sync_snowflake(cursor, root, tables=[source.table], days=[day])
    else:
        report = sync(tables=[source.table], days=[day], settings=settings)
    result = {
        "target_date": day.isoformat(),
        "table": f"raw.{source.table}",
        "intervals_loaded": len(report.loaded),
        "intervals_unchanged": report.unchanged,
        "rows_loaded": report.rows,
    }
    log.info("forecast warehouse load: %s", result)
    return result

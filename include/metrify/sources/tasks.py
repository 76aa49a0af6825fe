"""What the polling DAGs' tasks do, as plain functions (the DAG files only wire them).

Each run works on its own data interval; the DAG params `window_start`/`window_end` (ISO 8601)
override it, so one manual run (or `metrify run`) can land a whole simulated window, with the
same per-interval files a scheduled run would write.

Connection ids: `entsoe_api`, `gridradar_api`, `brightsky_api`, `openweathermap_api`, each
renamable in `metrify.config`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from metrify import lake
from metrify.config import load_settings
from metrify.sources import grid, weather
from metrify.sources.http import Endpoint

log = logging.getLogger(__name__)


def conn_id(source: str) -> str:
    """The Airflow connection id of a source (`entsoe`, `gridradar`, `dwd`, `openweathermap`)."""
    return load_settings().source_conn_ids[source]


def _utc(value: Any) -> datetime:
    ts = pd.Timestamp(value)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()


def window(
    data_interval_start: Any, data_interval_end: Any, params: dict[str, Any] | None
) -> tuple[datetime, datetime]:
    """The interval to poll: the params' window if given, else the run's data interval."""
    params = params or {}
    start = params.get("window_start") or data_interval_start
    end = params.get("window_end") or data_interval_end
    if start is None or end is None:
        raise ValueError("no data interval: trigger with a data interval or pass window_start/window_end")
    start, end = _utc(start), _utc(end)
    if end <= start:
        raise ValueError(
            f"empty window {start.isoformat()}..{end.isoformat()}: window_end must be after "
            f"window_start (a cron-trigger timetable gives zero-length intervals; use a "
            f"data-interval timetable or pass window_start/window_end)"
        )
    return start, end


def frequency_task(data_interval_start: Any, data_interval_end: Any, params: dict[str, Any] | None) -> dict[str, float]:
    start, end = window(data_interval_start, data_interval_end, params)
    return grid.fetch_frequency(Endpoint.from_airflow(conn_id("gridradar")), start, end)


def grid_operator_task(
    operator: str,
    frequency: dict[str, float],
    data_interval_start: Any,
    data_interval_end: Any,
    params: dict[str, Any] | None,
) -> dict[str, Any]:
    start, end = window(data_interval_start, data_interval_end, params)
    root = lake.lake_root(load_settings())
    return grid.ingest_operator(operator, start, end, Endpoint.from_airflow(conn_id("entsoe")), frequency, root)


def weather_source_task(
    source: str, data_interval_start: Any, data_interval_end: Any, params: dict[str, Any] | None
) -> dict[str, Any]:
    from airflow.sdk.exceptions import AirflowSkipException

    start, end = window(data_interval_start, data_interval_end, params)
    root = lake.lake_root(load_settings())
    try:
        return weather.ingest_source(
            source, start, end, Endpoint.from_airflow(conn_id(source)), root, now=datetime.now(UTC)
        )
    except weather.NotAvailable as exc:
        raise AirflowSkipException(str(exc)) from None

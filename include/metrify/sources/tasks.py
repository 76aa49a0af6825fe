"""What the polling DAGs' tasks do, as plain functions (the DAG files only wire them).

Each run works on its own data interval; the DAG params `window_start`/`window_end` (ISO 8601)
override it, so one manual run (or `metrify run`) can land a whole simulated window, with the
same per-interval files a scheduled run would write.

Connection ids (override with the environment variables in brackets):
`entsoe_api` (METRIFY_ENTSOE_CONN_ID), `gridradar_api` (METRIFY_GRIDRADAR_CONN_ID),
`brightsky_api` (METRIFY_BRIGHTSKY_CONN_ID), `openweathermap_api` (METRIFY_OPENWEATHERMAP_CONN_ID).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from metrify import lake
from metrify.http import Endpoint
from metrify.settings import load_settings
from metrify.sources import grid, weather

log = logging.getLogger(__name__)

DEFAULT_CONN_IDS = {"entsoe": "entsoe_api", "gridradar": "gridradar_api", "dwd": "brightsky_api",
                    "openweathermap": "openweathermap_api"}
ENV_NAMES = {"entsoe": "METRIFY_ENTSOE_CONN_ID", "gridradar": "METRIFY_GRIDRADAR_CONN_ID",
             "dwd": "METRIFY_BRIGHTSKY_CONN_ID", "openweathermap": "METRIFY_OPENWEATHERMAP_CONN_ID"}


def conn_id(source: str) -> str:
    return os.environ.get(ENV_NAMES[source]) or DEFAULT_CONN_IDS[source]


def _utc(value: Any) -> datetime:
    ts = pd.Timestamp(value)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()


def window(data_interval_start: Any, data_interval_end: Any, params: dict[str, Any] | None) -> tuple[datetime, datetime]:
    """The interval to poll: the params' window if given, else the run's data interval."""
    params = params or {}
    start = params.get("window_start") or data_interval_start
    end = params.get("window_end") or data_interval_end
    if start is None or end is None:
        raise ValueError("no data interval: trigger with a data interval or pass window_start/window_end")
    start, end = _utc(start), _utc(end)
    if end <= start:
        raise ValueError(f"empty window {start.isoformat()}..{end.isoformat()}: window_end must be after "
                         f"window_start (a cron-trigger timetable gives zero-length intervals; use a "
                         f"data-interval timetable or pass window_start/window_end)")
    return start, end


def frequency_task(data_interval_start: Any, data_interval_end: Any, params: dict[str, Any] | None
                   ) -> dict[str, float]:
    start, end = window(data_interval_start, data_interval_end, params)
    return grid.fetch_frequency(Endpoint.from_airflow(conn_id("gridradar")), start, end)


def grid_operator_task(operator: str, frequency: dict[str, float], data_interval_start: Any,
                       data_interval_end: Any, params: dict[str, Any] | None) -> dict[str, Any]:
    start, end = window(data_interval_start, data_interval_end, params)
    root = lake.lake_root(load_settings())
    return grid.ingest_operator(operator, start, end, Endpoint.from_airflow(conn_id("entsoe")), frequency, root)


def weather_source_task(source: str, data_interval_start: Any, data_interval_end: Any,
                        params: dict[str, Any] | None) -> dict[str, Any]:
    from airflow.sdk.exceptions import AirflowSkipException

    start, end = window(data_interval_start, data_interval_end, params)
    root = lake.lake_root(load_settings())
    try:
        return weather.ingest_source(source, start, end, Endpoint.from_airflow(conn_id(source)), root,
                                     now=datetime.now(timezone.utc))
    except weather.NotAvailable as exc:
        raise AirflowSkipException(str(exc)) from None

"""What the polling DAGs' tasks do, as plain functions (the DAG files only wire them).

A scheduled run polls a trailing window: its data interval, widened to start
`grid_repoll_hours` (ENTSO-E, gridradar) or `weather_repoll_hours` (DWD) before the interval's
end, in one request per document or city. Data a publisher releases late thus lands on a later
run, in the same per-interval files. OpenWeatherMap polls its own hour only (its current-weather
API knows only "now"). The DAG params `window_start`/`window_end` (ISO 8601) replace the window,
so one manual run (or `metrify run`) can land a whole simulated window, with the same
per-interval files scheduled runs write.

Connection ids: `entsoe_api`, `gridradar_api`, `brightsky_api`, `openweathermap_api`, each
renamable in `metrify.config`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from metrify import lake
from metrify.config import Settings, load_settings
from metrify.sources import brightsky, entsoe, grid, publication, weather
from metrify.sources.http import Endpoint

log = logging.getLogger(__name__)

#: Sources a scheduled run re-polls: (setting, its variable, publication delay, interval length).
REPOLLED = {
    "entsoe": ("grid_repoll_hours", "METRIFY_GRID_REPOLL_HOURS", entsoe.PUBLICATION_DELAY, grid.QUARTER),
    "dwd": ("weather_repoll_hours", "METRIFY_WEATHER_REPOLL_HOURS", brightsky.PUBLICATION_DELAY, weather.HOUR),
}


def conn_id(source: str) -> str:
    """The Airflow connection id of a source (`entsoe`, `gridradar`, `dwd`, `openweathermap`)."""
    return load_settings().source_conn_ids[source]


def _utc(value: Any) -> datetime:
    ts = pd.Timestamp(value)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()


def repoll_span(source: str, settings: Settings | None = None) -> timedelta:
    """How far before its interval's end a scheduled run of `source` polls (zero: its own interval)."""
    if source not in REPOLLED:
        return timedelta(0)
    name, variable, delay, step = REPOLLED[source]
    hours = getattr(settings or load_settings(), name)
    if timedelta(hours=hours) < delay + step:
        raise ValueError(
            f"{variable}={hours:g} is shorter than the {publication.hours_text(delay)} publication delay of "
            f"{source} plus one interval: a late interval would leave the window before it is due and a "
            f"missing one would never fail a run. Set it to at least {publication.hours_text(delay + step)}."
        )
    return timedelta(hours=hours)


def window(
    data_interval_start: Any,
    data_interval_end: Any,
    params: dict[str, Any] | None,
    repoll: timedelta = timedelta(0),
) -> tuple[datetime, datetime]:
    """The window to poll: the params' window if given (a manual run), else the run's data
    interval, widened to start at least `repoll` before its end (the trailing re-poll)."""
    params = params or {}
    manual = bool(params.get("window_start") or params.get("window_end"))
    start = params.get("window_start") or data_interval_start
    end = params.get("window_end") or data_interval_end
    if start is None or end is None:
        raise ValueError("no data interval: trigger with a data interval or pass window_start/window_end")
    start, end = _utc(start), _utc(end)
    if not manual:
        start = min(start, end - repoll)
    if end <= start:
        raise ValueError(
            f"empty window {start.isoformat()}..{end.isoformat()}: window_end must be after "
            f"window_start (a cron-trigger timetable gives zero-length intervals; use a "
            f"data-interval timetable or pass window_start/window_end)"
        )
    return start, end


def frequency_task(data_interval_start: Any, data_interval_end: Any, params: dict[str, Any] | None) -> dict[str, float]:
    """Grid frequency for the same window the operators' tasks land (one gridradar request)."""
    start, end = window(data_interval_start, data_interval_end, params, repoll_span("entsoe"))
    return grid.fetch_frequency(Endpoint.from_airflow(conn_id("gridradar")), start, end)


def grid_operator_task(
    operator: str,
    frequency: dict[str, float],
    data_interval_start: Any,
    data_interval_end: Any,
    params: dict[str, Any] | None,
) -> dict[str, Any]:
    start, end = window(data_interval_start, data_interval_end, params, repoll_span("entsoe"))
    root = lake.lake_root(load_settings())
    return grid.ingest_operator(operator, start, end, Endpoint.from_airflow(conn_id("entsoe")), frequency, root)


def weather_source_task(
    source: str, data_interval_start: Any, data_interval_end: Any, params: dict[str, Any] | None
) -> dict[str, Any]:
    from airflow.sdk.exceptions import AirflowSkipException

    start, end = window(data_interval_start, data_interval_end, params, repoll_span(source))
    root = lake.lake_root(load_settings())
    try:
        return weather.ingest_source(
            source, start, end, Endpoint.from_airflow(conn_id(source)), root, now=datetime.now(UTC)
        )
    except weather.NotAvailable as exc:
        raise AirflowSkipException(str(exc)) from None


def weather_forecast_task(source: str, data_interval_end: Any, params: dict[str, Any] | None) -> dict[str, Any]:
    """Land the newest forecast run of `source` available at the run's end (or the `as_of` param)."""
    from metrify.sources import weather_forecast

    as_of = (params or {}).get("as_of") or data_interval_end
    if as_of is None:
        raise ValueError("no data interval: trigger with a data interval or pass as_of (ISO 8601, UTC)")
    root = lake.lake_root(load_settings())
    return weather_forecast.ingest_forecast(source, _utc(as_of), Endpoint.from_airflow(conn_id(source)), root)

"""
### Weather for German cities, hourly: DWD (Bright Sky) and OpenWeatherMap

One mapped task per source polls every configured city (`METRIFY_WEATHER_CITIES`, default all
cities of `metrify.contracts.geography`: the ten largest and every city simulated meters live in)
and lands `raw/weather/source=<dwd|openweathermap>/date=…/hour=…/<hour>.parquet` (one file per
hour). Connections: `brightsky_api` (no key) and `openweathermap_api` (key = password; extra
`{"history": "timemachine"}` allows backfilling past hours through One Call 3.0, otherwise past
hours are skipped with a message).

**Trailing window.** DWD's observations reach Bright Sky up to 2 h after the hour. Each scheduled
`dwd` run therefore polls the last `METRIFY_WEATHER_REPOLL_HOURS` (default 6 h), one request per
city, and overwrites the same hourly files: an hour published late lands on a later run.
OpenWeatherMap polls only its own hour (its current-weather API knows only "now"). The params
`window_start`/`window_end` (ISO 8601) replace the window in a manual run.

**On failure:** the log names the source, the cities, the hours and the connection. "not yet
published … skipped" is not a failure: those hours are still inside the source's delay. "no
record for <hours>, older than the … publication delay" is a missing hour: the other cities
landed, Airflow retries, later runs re-poll it; if it stays missing, follow RUNBOOK.md "Source
data missing". A malformed payload for a city is quarantined under `quarantine/weather/` with
its reason, the other cities land, and the task fails. HTTP 401/403 fails at once: fix the key
in the named connection. The `energy_demand_factor` formula: `docs/grid-and-weather.md`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable

from metrify.assets import RAW_WEATHER
from metrify.contracts.weather import SOURCES
from metrify.oncall.defaults import deadline, default_args
from metrify.sources.schedule import window_params


@dag(
    dag_id="ingest_weather",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    deadline=deadline(timedelta(minutes=60), "ingest_weather"),
    max_active_runs=2,
    default_args=default_args(execution_timeout=timedelta(minutes=20), retry_delay=timedelta(minutes=5)),
    params=window_params(),
    tags=["metrify", "ingest", "weather", "api"],
    doc_md=__doc__,
)
def ingest_weather():
    @task(outlets=[RAW_WEATHER], map_index_template="{{ map_label }}")
    def land_source(source: str, data_interval_start=None, data_interval_end=None, params=None) -> dict:
        from metrify.sources.tasks import weather_source_task

        get_current_context()["map_label"] = source
        return weather_source_task(source, data_interval_start, data_interval_end, params)

    land_source.expand(source=list(SOURCES))


ingest_weather()

"""
### Weather for German cities, hourly: DWD (Bright Sky) and OpenWeatherMap

One mapped task per source polls every configured city (`METRIFY_WEATHER_CITIES`, default all
cities of `metrify.contracts.geography`: the ten largest and every city simulated meters live in) for the
run's data interval and lands `raw/weather/source=<dwd|openweathermap>/date=…/hour=…/<hour>.parquet`
(overwritten on re-runs and backfills). Connections: `brightsky_api` (no key) and
`openweathermap_api` (key = password; extra `{"history": "timemachine"}` allows backfilling
past hours through One Call 3.0, otherwise past hours are skipped with a message).

**On failure:** the log names the source, the cities and the connection. A malformed payload
for a city is quarantined under `quarantine/weather/` with its reason, the other cities land,
and the task fails. HTTP 401/403 fails at once: fix the key in the named connection.
The `energy_demand_factor` formula: `docs/grid-and-weather.md`.
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

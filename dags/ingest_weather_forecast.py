"""
### Weather forecasts for German cities, every 6 hours: DWD MOSMIX (Bright Sky) and OpenWeatherMap

One mapped task per source polls the newest forecast run for every configured city
(`METRIFY_WEATHER_CITIES`, the same cities as `ingest_weather`) and lands
`raw/weather_forecast/source=<dwd|openweathermap>/date=<issue date>/hour=<issue hour>/<run>.parquet`
(one file per source and run). DWD computes MOSMIX from the 03, 09, 15 and 21 UTC runs and
publishes each about 2 h later; this DAG runs at 05, 11, 17 and 23 UTC and attributes the answer
to the newest run out at the end of its data interval (param `as_of`, ISO 8601, overrides it).
DWD: the next 72 h hourly; OpenWeatherMap: its 5-day list in 3-hour steps. The `forecast_load`
model reads the newest run per city and hour. Connections: `brightsky_api`, `openweathermap_api`.

**Re-polling** the same run (a retry, or a manual run with the same `as_of`) overwrites the same
file; a city failing on the re-poll keeps what an earlier poll landed for it.

**On failure:** the log names the source, the issue time, the cities and the connection. A
malformed payload for a city is quarantined under `quarantine/weather_forecast/` with its reason
(the provider changed its format: compare with `include/metrify/sources/brightsky.py` or
`openweathermap.py`), the other cities land, and the task fails. "holds no forecast" means the
provider answered without forecast records: retry; if it persists, follow RUNBOOK.md "Source data
missing". HTTP 401/403 fails at once: fix the key in the named connection. A failed run leaves
the previous run's forecast in the lake, which the load forecast then uses (one run older).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable

from metrify.assets import RAW_WEATHER_FORECAST
from metrify.contracts.weather import SOURCES
from metrify.oncall.defaults import deadline, default_args


@dag(
    dag_id="ingest_weather_forecast",
    schedule=CronDataIntervalTimetable("0 5,11,17,23 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    deadline=deadline(timedelta(hours=2), "ingest_weather_forecast"),
    max_active_runs=1,
    default_args=default_args(execution_timeout=timedelta(minutes=20), retry_delay=timedelta(minutes=10)),
    params={"as_of": Param(None, type=["null", "string"], description="override: poll as of (ISO 8601, UTC)")},
    tags=["metrify", "ingest", "weather", "forecast", "api"],
    doc_md=__doc__,
)
def ingest_weather_forecast():
    @task(outlets=[RAW_WEATHER_FORECAST], map_index_template="{{ map_label }}")
    def land_forecast(source: str, data_interval_end=None, params=None) -> dict:
        from metrify.sources.tasks import weather_forecast_task

        get_current_context()["map_label"] = source
        return weather_forecast_task(source, data_interval_end, params)

    land_forecast.expand(source=list(SOURCES))


ingest_weather_forecast()

"""
### Grid status of the four German TSOs, every 15 minutes

One mapped task per transmission system operator (TenneT, 50Hertz, Amprion, TransnetBW) reads
its control area's actual load (A65), generation per type (A75) and installed capacity (A68)
from the ENTSO-E Transparency Platform (connection `entsoe_api`) and the grid frequency from
gridradar (connection `gridradar_api`, fetched once per run by `frequency`), and lands
`raw/grid_status/operator=<op>/date=…/hour=…/<reading_ts>.parquet` (one file per quarter-hour).

**Trailing window.** ENTSO-E publishes a quarter-hour up to 1 h after it ends. Each scheduled
run therefore polls the last `METRIFY_GRID_REPOLL_HOURS` (default 3 h) up to the end of its
interval, in one request per document, and overwrites the same per-quarter-hour files: a
quarter-hour published late lands on a later run. The params `window_start`/`window_end`
(ISO 8601) replace the window in a manual run.

**On failure:** the task log names the operator, the quarter-hours and the connection.
"not yet published … skipped" is not a failure: those quarter-hours are still inside ENTSO-E's
1 h delay and a later run lands them. "has not published N quarter-hours older than its 1 h
publication delay" is a missing quarter-hour: the others landed, Airflow retries, later runs
re-poll it; if it stays missing, follow RUNBOOK.md "Source data missing". HTTP 401/403: fix the
key in the named connection. Malformed payloads are quarantined under `quarantine/grid_status/`
with the reason. One operator failing does not stop the others. Field origins and the
stability-score formula: `docs/grid-and-weather.md`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable

from metrify.assets import RAW_GRID_STATUS
from metrify.contracts.geography import TSOS
from metrify.oncall.defaults import deadline, default_args
from metrify.sources.schedule import window_params


@dag(
    dag_id="ingest_grid_status",
    schedule=CronDataIntervalTimetable("*/15 * * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    deadline=deadline(timedelta(minutes=30), "ingest_grid_status"),
    max_active_runs=4,
    default_args=default_args(execution_timeout=timedelta(minutes=10), retry_delay=timedelta(minutes=5)),
    params=window_params(),
    tags=["metrify", "ingest", "grid", "api"],
    doc_md=__doc__,
)
def ingest_grid_status():
    @task
    def frequency(data_interval_start=None, data_interval_end=None, params=None) -> dict[str, float]:
        from metrify.sources.tasks import frequency_task

        return frequency_task(data_interval_start, data_interval_end, params)

    @task(outlets=[RAW_GRID_STATUS], map_index_template="{{ map_label }}")
    def land_operator(
        operator: str, hz: dict[str, float], data_interval_start=None, data_interval_end=None, params=None
    ) -> dict:
        from metrify.sources.tasks import grid_operator_task

        get_current_context()["map_label"] = operator
        return grid_operator_task(operator, hz, data_interval_start, data_interval_end, params)

    land_operator.partial(hz=frequency()).expand(operator=list(TSOS))


ingest_grid_status()

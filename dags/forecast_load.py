"""Day-ahead load forecast per federal state (region) and control area.

**What it does.** The run due at 04:30 Europe/Berlin on day D forecasts the whole local day
D + 1 in quarter-hours (p10/p50/p90 kWh) for every region and control area with registered
meters: history is the validated consumption up to the end of D - 1 (what `warehouse_daily`
rebuilt at 02:30; its deadline is 2 h, so 04:30 is after it in the normal case), temperature the
validated observations plus the latest weather forecast issued before the run (DWD first, then
OpenWeatherMap). The forecast lands in the lake at
`forecast/load_forecast/date=<D+1>/load_forecast.parquet` (a rerun replaces it).

**The plot.** Forecast p50 with its p10-p90 band against the actual load, per region, for the
target day and the week before: `forecast/plots/date=<D+1>/load_forecast.png` in the lake (the
task log prints its full path; locally the lake is `METRIFY_LAKE_URL`, `file://...`). Open it
after each run: the band should follow the black actual line.

**In the warehouse.** After landing it, the run loads the target day's forecast into
`raw.load_forecast` (`load_warehouse`, replacing that day) and builds the forecast models with
Cosmos (`dbt_forecast`, dbt selector `tag:forecast`): `marts.fct_load_forecast` (p10/p50/p90
per series and quarter-hour, method, model version) and `metrics.forecast_accuracy_daily`
(earlier forecasts against the actual load: MAE, nMAE, p10-p90 coverage per series and day).
Both wait in the warehouse pool like every warehouse task.

**Fallback.** A series whose model cannot run (too little history, no weather forecast for
the target day) gets the same weekday last week, scaled, marked `method = fallback_last_week`;
the task log names each such series and why (look for `FALLBACK`). A fallback is a valid
forecast, but several days of it in a row mean a missing input: check `ingest_weather_forecast`
and the quality gate.

**On failure.** Read the `forecast` task's log: a missing registry connection, an unreadable
lake file or a model error names the series and file. Fix, then clear the task; the run is
idempotent per target day. Backfill with `airflow backfill create --dag-id forecast_load
--from-date ... --to-date ...` (the logical dates pick the target days). RUNBOOK.md has the
general steps for a failed task.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from metrify.assets import LOAD_FORECAST
from metrify.oncall.defaults import deadline, default_args
from metrify.warehouse.cosmos_config import forecast_task_group, max_active_tasks, pool


@dag(
    dag_id="forecast_load",
    # a cron (not the WAREHOUSE_METRICS asset): a run's logical date names its target day, so
    # scheduled runs and backfills forecast the same days; 04:30 is after warehouse_daily's deadline
    schedule="30 4 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="Europe/Berlin"),
    catchup=False,
    max_active_runs=1,
    max_active_tasks=max_active_tasks(),
    default_args=default_args(execution_timeout=timedelta(minutes=30)),
    deadline=deadline(timedelta(minutes=60), "forecast_load"),
    tags=["metrify", "forecast"],
    doc_md=__doc__,
)
def forecast_load():
    @task(outlets=[LOAD_FORECAST])
    def forecast(data_interval_start=None, data_interval_end=None) -> dict:
        """Forecast the next local day per region and control area; land it and its plot."""
        from metrify.forecast.tasks import run_forecast

        return run_forecast(data_interval_start, data_interval_end)

    @task(pool=pool())
    def load_warehouse(data_interval_start=None, data_interval_end=None) -> dict:
        """Load the target day's landed forecast into the warehouse (raw.load_forecast)."""
        from metrify.forecast.tasks import load_into_warehouse

        return load_into_warehouse(data_interval_start, data_interval_end)

    forecast() >> load_warehouse() >> forecast_task_group()


forecast_load()

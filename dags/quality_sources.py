"""
### Quality gates for grid status and weather, and grid anomalies

Runs whenever `metrify://lake/raw/grid_status` or `metrify://lake/raw/weather` is updated.

1. **find_grid_status_days** / **find_weather_days** – UTC days of each dataset whose raw files
   changed since the gate last judged
   them (or `{"grid_status": [...dates], "weather": [...dates]}` in a manual run's conf).
2. **gate_grid_status** / **gate_weather** (mapped per day) – Great Expectations suites
   `grid_status` / `weather` (schema, types, key uniqueness, physical bounds as *critical*,
   plausibility bands and timeliness as *warning*). Failing rows go to
   `quarantine/<dataset>_gate/date=/` with their reason; a critical failure fails the task
   without retry (log: expectation, column, counts, sample rows, Data Docs) and leaves no
   `validated/<dataset>/date=/`; a pass writes it and updates `metrify://lake/validated/<dataset>`.
3. **grid_anomalies** – frequency excursions (outside 50 Hz +-0.2), low stability (score < 50),
   capacity shortfall (load factor > 0.9) to `anomalies/grid_status/date=/`.
4. **summary** – counts; needs every gate to pass, so a blocked day fails the run.

Reading a failure: see `docs/quality.md`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task

from metrify.assets import RAW_GRID_STATUS, RAW_WEATHER, VALIDATED_GRID_STATUS, VALIDATED_WEATHER
from metrify.oncall.defaults import deadline, default_args


@dag(
    dag_id="quality_sources",
    schedule=(RAW_GRID_STATUS | RAW_WEATHER),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(execution_timeout=timedelta(minutes=20)),
    deadline=deadline(timedelta(hours=1), "quality_sources"),
    tags=["metrify", "quality", "grid_status", "weather", "great_expectations"],
    doc_md=__doc__,
)
def quality_sources() -> None:
    @task
    def find_days(dataset: str) -> list[str]:
        from metrify.quality.tasks import source_days

        return source_days(dataset, dict(getattr(get_current_context().get("dag_run"), "conf", None) or {}))

    # one gate per dataset at a time: each dataset's GX file context is shared on disk
    @task(outlets=[VALIDATED_GRID_STATUS], max_active_tis_per_dagrun=1)
    def gate_grid_status(date: str) -> dict[str, Any]:
        from metrify.quality.tasks import gate_source_day

        event_extra, summary = gate_source_day("grid_status", date)
        get_current_context()["outlet_events"][VALIDATED_GRID_STATUS].extra = event_extra
        return summary

    @task(outlets=[VALIDATED_WEATHER], max_active_tis_per_dagrun=1)
    def gate_weather(date: str) -> dict[str, Any]:
        from metrify.quality.tasks import gate_source_day

        event_extra, summary = gate_source_day("weather", date)
        get_current_context()["outlet_events"][VALIDATED_WEATHER].extra = event_extra
        return summary

    @task(trigger_rule="all_done")
    def grid_anomalies(dates: list[str]) -> list[dict[str, Any]]:
        from metrify.quality.tasks import grid_anomalies_of

        return grid_anomalies_of(list(dates))

    @task
    def summary(grid: list[dict[str, Any]], weather: list[dict[str, Any]]) -> dict[str, Any]:
        """Needs every gate to pass, so a blocked day marks the run failed (grid_anomalies, which
        runs regardless, would otherwise make the run look successful)."""
        from metrify.quality.tasks import source_summary

        return source_summary(list(grid) + list(weather))

    grid_days = find_days.override(task_id="find_grid_status_days")("grid_status")
    weather_days = find_days.override(task_id="find_weather_days")("weather")
    grid_gates = gate_grid_status.expand(date=grid_days)
    weather_gates = gate_weather.expand(date=weather_days)
    grid_gates >> grid_anomalies(grid_days)
    summary(grid_gates, weather_gates)


quality_sources()

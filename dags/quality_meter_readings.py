"""
### Quality gate and anomaly detection for meter readings

Runs whenever the ingestion updates `metrify://lake/raw/meter_readings`.

1. **find_intervals** – the hour partitions to judge: the `intervals`
   (`[{"date": "YYYY-MM-DD", "hour": H}, ...]`) or `date` of a manual run's conf, else every raw
   hour partition whose files changed since the gate last judged it (the gate marker records
   the files it saw), on the days the drain still accepts readings for.
2. **gate** (mapped, one task per hour) – Great Expectations checkpoint (suites
   `meter_readings` and `meter_readings_completeness`) plus vectorised row rules. Failing rows
   go to `quarantine/meter_readings_gate/` with their reason. If a *critical* expectation
   fails, the task fails without retry and its log names the expectation, the column, the
   counts, sample rows, the quarantine and the Data Docs page; nothing is written to
   `validated/` and `metrify://lake/validated/meter_readings` is **not** updated for that hour.
   Otherwise the usable rows go to `validated/meter_readings/date=/hour=/` and the asset is
   updated (extra: date, hour, rows, quality score).
3. **detect_anomalies** (runs also when a gate failed) – rules and robust statistics over each
   touched meter-day (UTC day of the interval start: reading_ts in (D 00:00, D+1 00:00]); findings
   to `anomalies/meter_readings/date=/`, meter-day quality scores to
   `quality/meter_day_scores/date=/`.
4. **summary** – logs the counts; it needs every gate to pass, so a blocked interval marks the
   whole run failed (the anomaly task alone would otherwise make the run look successful).

Reading a failure: see `docs/quality.md`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task

from metrify.assets import RAW_METER_READINGS, VALIDATED_METER_READINGS
from metrify.oncall.defaults import deadline, default_args


@dag(
    dag_id="quality_meter_readings",
    schedule=[RAW_METER_READINGS],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(execution_timeout=timedelta(minutes=30)),
    deadline=deadline(timedelta(hours=1), "quality_meter_readings"),
    tags=["metrify", "quality", "meter_readings", "great_expectations"],
    doc_md=__doc__,
)
def quality_meter_readings() -> None:
    @task
    def find_intervals() -> list[dict[str, Any]]:
        from metrify.quality.tasks import intervals_from_request

        conf = dict(getattr(get_current_context().get("dag_run"), "conf", None) or {})
        return intervals_from_request(conf)

    # one gate at a time: the GX file context (suites, results, Data Docs) is shared on disk
    @task(outlets=[VALIDATED_METER_READINGS], max_active_tis_per_dagrun=1)
    def gate(interval: dict[str, Any]) -> dict[str, Any]:
        from metrify.quality.tasks import gate_meter_hour

        event_extra, summary = gate_meter_hour(interval)
        get_current_context()["outlet_events"][VALIDATED_METER_READINGS].extra = event_extra
        return summary

    @task(trigger_rule="all_done")
    def detect_anomalies(intervals: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from metrify.quality.tasks import days_for_intervals, run_anomalies

        return [run_anomalies(day) for day in days_for_intervals(intervals)]

    @task
    def summary(gates: list[dict[str, Any]], days: list[dict[str, Any]]) -> dict[str, Any]:
        """Runs only when every gate passed: a blocked interval leaves it upstream_failed, so the
        run is marked failed even though detect_anomalies (all_done) succeeded."""
        from metrify.quality.tasks import run_summary

        return run_summary(list(gates), list(days))

    intervals = find_intervals()
    gates = gate.expand(interval=intervals)
    days = detect_anomalies(intervals)
    gates >> days
    summary(gates, days)


quality_meter_readings()

"""Task bodies of the quality DAGs (`quality_meter_readings`, `quality_sources`): plain functions.

A gate that fails on bad data raises `AirflowFailException` (a retry cannot fix data), naming
the expectation, the column, the counts, sample rows and the Data Docs page.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from metrify import lake, validate
from metrify.config import Settings, load_settings
from metrify.contracts import grid, readings, weather
from metrify.contracts.calendar import quarter_hours_in_day
from metrify.contracts.events import ValidatedInterval
from metrify.quality import anomalies
from metrify.quality.checkpoint import QualityGateError
from metrify.quality.gate import (
    GateInterval,
    day_files,
    pending_days,
    pending_intervals,
    raw_partition,
    run_gate,
    run_source_gate,
    write_release,
)
from metrify.quality.grid_anomalies import run_grid_anomalies
from metrify.quality.rules import INTERVAL, evaluate_rows
from metrify.quality.scores import METER_DAY_TIMEZONE, SCORE_DATASET, SCORE_SCHEMA, batch_score, meter_day_scores

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)


def _fail_on_bad_data(error: QualityGateError) -> Exception:
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(str(error))


def gate_meter_hour(interval: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Judge one hour of meter readings: (the validated asset event's extra, the task's summary)."""
    try:
        report = run_gate(str(interval["date"]), int(interval["hour"]))
    except QualityGateError as exc:  # bad data: a retry cannot fix it
        raise _fail_on_bad_data(exc) from exc
    extra = ValidatedInterval(
        dataset=readings.DATASET,
        date=report.date,
        hour=report.hour,
        rows=report.validated,
        status=report.status,
        quality_score=report.score["quality_score"],
        quality_tier=report.score["quality_tier"],
    ).to_extra()
    summary = {
        "date": report.date,
        "hour": report.hour,
        "validated": report.validated,
        "quarantined": report.quarantined,
        "quality_score": report.score["quality_score"],
    }
    return extra, summary


def gate_source_day(dataset: str, date: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Judge one UTC day of grid status or weather: (the validated asset event's extra, the summary)."""
    try:
        report = run_source_gate(dataset, date)
    except QualityGateError as exc:  # bad data: a retry cannot fix it
        raise _fail_on_bad_data(exc) from exc
    extra = ValidatedInterval(dataset=dataset, date=date, hour=None, rows=report["validated"], status=report["status"])
    return extra.to_extra(), {k: report[k] for k in ("dataset", "date", "rows", "validated", "quarantined", "status")}


def source_days(dataset: str, conf: dict[str, Any]) -> list[str]:
    """UTC days of `dataset` to judge: a manual run's conf (`{"<dataset>": [dates]}`, each date
    checked), else every day whose raw files changed since the gate last judged it."""
    if not conf.get(dataset):
        return pending_days(dataset)
    dates = conf[dataset]
    if not isinstance(dates, list):
        raise ValueError(f"{dataset} must be a list of dates YYYY-MM-DD; got {dates!r}")
    return sorted({validate.iso_date(d, f"{dataset}[{n}]") for n, d in enumerate(dates)})


def grid_anomalies_of(dates: list[str]) -> list[dict[str, Any]]:
    return [run_grid_anomalies(date) for date in dates]


def source_summary(reports: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "days": len(reports),
        "validated_rows": sum(r["validated"] for r in reports),
        "quarantined_rows": sum(r["quarantined"] for r in reports),
    }


# dataset -> (judged per hour?, the DAG that judges it)
RELEASABLE = {
    readings.DATASET: (True, "quality_meter_readings"),
    grid.DATASET: (False, "quality_sources"),
    weather.DATASET: (False, "quality_sources"),
}


def record_release(dataset: str, date: str, hour: int | None, reason: str, released_by: str) -> dict[str, Any]:
    """An operator releases a blocked interval: record who and why, for the interval's current
    raw files. Returns the quality DAG and the conf that judges the interval again (which then
    publishes its usable rows with status `released` and updates the validated asset)."""
    if dataset not in RELEASABLE:
        raise ValueError(f"cannot release dataset {dataset!r}: one of {sorted(RELEASABLE)}")
    validate.iso_date(date, "date")
    hourly, dag_id = RELEASABLE[dataset]
    if hourly != (hour is not None):
        raise ValueError(
            f"{dataset} is judged per {'hour' if hourly else 'day'}: {'give' if hourly else 'leave out'} the hour"
        )
    if hour is not None:
        hour = validate.hour(hour, "hour")
    root = lake.lake_root(load_settings())
    interval = GateInterval(dataset, date, hour)
    files = (
        lake.list_files(raw_partition(root, date, int(hour))) if hour is not None else day_files(root, dataset, date)
    )
    release = write_release(root, interval, reason, released_by, files)
    log.warning(
        "%s %s released by %s: %s (%d raw files); judging it again with %s",
        dataset,
        interval.label,
        released_by,
        release.reason,
        len(files),
        dag_id,
    )
    conf: dict[str, Any] = {"intervals": [{"date": date, "hour": hour}]} if hourly else {dataset: [date]}
    return {"dag_id": dag_id, "conf": conf, "interval": interval.label, "released_by": released_by}


def days_for_intervals(intervals: list[dict[str, Any]]) -> list[str]:
    """Meter-days touched by hour intervals: a day D is (D 00:00, D+1 00:00] in reading_ts
    (interval-start day), so hour 00 of D+1 also completes day D."""
    days: set[str] = set()
    for interval in intervals:
        days.add(str(interval["date"]))
        if int(interval["hour"]) == 0:
            days.add((pd.Timestamp(interval["date"]) - pd.Timedelta(days=1)).strftime("%Y-%m-%d"))
    return sorted(days)


def read_day(root: ObjectStoragePath, date: str) -> pd.DataFrame:
    """Raw readings of meter-day `date`: reading_ts in (date 00:00, date+1 00:00], delivery order."""
    start = pd.Timestamp(date, tz="UTC")
    end = start + pd.Timedelta(days=1)
    frames = []
    for path in (
        lake.partition_path(root, "raw", readings.DATASET, date=date),
        lake.partition_path(root, "raw", readings.DATASET, date=end.strftime("%Y-%m-%d"), hour="00"),
    ):
        table = lake.read_table(path, columns=list(readings.RAW_SCHEMA.names))
        if table is not None:
            frames.append(table.to_pandas())
    if not frames:
        return readings.RAW_SCHEMA.empty_table().to_pandas()
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[(frame["reading_ts"] > start) & (frame["reading_ts"] <= end)]
    return frame.sort_values(["topic", "partition", "offset"], kind="stable", ignore_index=True)


def run_anomalies(date: str, settings: Settings | None = None) -> dict[str, Any]:
    """Detect anomalies in one meter-day of raw readings; write findings and meter-day scores.

    The meter-day is the UTC day (`METER_DAY_TIMEZONE`), like the lake partitions it reads and
    writes, so 96 quarter-hours are due per meter, DST change days included (the calendar says
    so; Europe/Berlin business days are the warehouse's `meter_quality_tiers`).
    Findings go to `anomalies/meter_readings/date=<date>/`, scores to
    `quality/meter_day_scores/date=<date>/` (both overwritten: a re-run is idempotent).
    """
    settings = settings or load_settings()
    root = lake.lake_root(settings)
    frame = read_day(root, date)
    if frame.empty:  # e.g. the day before the first hour-00 partition: nothing to judge
        log.info("anomalies for %s: no raw readings, nothing written", date)
        return {"date": date, "rows": 0, "findings": {}}
    day_start = pd.Timestamp(date, tz="UTC")
    day_end = day_start + pd.Timedelta(days=1)
    last = frame["reading_ts"].max() if len(frame) else day_start
    window_end = min(day_end, last)  # a day still being ingested: do not report the future as gaps
    findings = anomalies.detect_anomalies(frame, day_start, window_end)
    path = anomalies.write_anomalies(findings, root, date)
    checked = evaluate_rows(frame, day_start + INTERVAL, day_end + INTERVAL)
    scores = meter_day_scores(checked, findings, timezone=METER_DAY_TIMEZONE)
    due_per_meter = quarter_hours_in_day(day_start.date(), METER_DAY_TIMEZONE)
    score_path = lake.partition_path(root, "quality", SCORE_DATASET, date=date) / f"{SCORE_DATASET}.parquet"
    lake.write_parquet(pa.Table.from_pandas(scores, schema=SCORE_SCHEMA, preserve_index=False), score_path)
    summary = {
        "date": date,
        "rows": len(frame),
        "findings": findings["anomaly_type"].value_counts().to_dict(),
        "anomalies_path": str(path),
        "scores_path": str(score_path),
        "tiers": scores["quality_tier"].value_counts().to_dict(),
        "batch_score": batch_score(checked, findings, expected_readings=frame["meter_id"].nunique() * due_per_meter),
    }
    log.info("anomalies for %s: %s", date, json.dumps(summary, default=str))
    return summary


def intervals_from_request(conf: dict[str, Any], settings: Settings | None = None) -> list[dict[str, Any]]:
    """The hour intervals a quality run must judge: a manual run's conf (`{"intervals":
    [{"date":..,"hour":..}]}`, or `{"date": "YYYY-MM-DD"}` for all its raw hours), else every raw
    hour whose files changed since the gate last judged it (what a scheduled run does: the raw
    files themselves say what is new, so no event payload has to)."""

    if conf.get("intervals"):
        items = conf["intervals"]
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ValueError(f'intervals must be a list of {{"date": "YYYY-MM-DD", "hour": H}}; got {items!r}')
        seen = {
            (
                validate.iso_date(i.get("date"), f"intervals[{n}].date"),
                validate.hour(i.get("hour"), f"intervals[{n}].hour"),
            )
            for n, i in enumerate(items)
        }
        return [{"date": d, "hour": h} for d, h in sorted(seen)]
    if conf.get("date"):
        date = validate.iso_date(conf["date"], "date")
        settings = settings or load_settings()
        base = lake.partition_path(lake.lake_root(settings), "raw", readings.DATASET, date=date)
        hours = {p.split("hour=")[1].split("/")[0] for p in lake.list_files(base) if "hour=" in p}
        return [{"date": date, "hour": h} for h in sorted(validate.hour(h, "hour") for h in hours)]
    return pending_intervals(settings)


def run_summary(gates: list[dict[str, Any]], days: list[dict[str, Any]]) -> dict[str, Any]:
    """One log line an on-call engineer can read: what passed, what was quarantined, what was found."""
    findings: dict[str, int] = {}
    for day in days:
        for kind, count in day.get("findings", {}).items():
            findings[kind] = findings.get(kind, 0) + int(count)
    result = {
        "intervals": len(gates),
        "validated_rows": sum(int(g["validated"]) for g in gates),
        "quarantined_rows": sum(int(g["quarantined"]) for g in gates),
        "lowest_quality_score": min((g["quality_score"] for g in gates), default=None),
        "days": [d["date"] for d in days],
        "anomalies": findings,
    }
    log.info("quality run: %s", json.dumps(result, default=str))
    return result

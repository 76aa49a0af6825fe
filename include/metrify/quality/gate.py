"""The quality gate: one hour of meter readings, or one UTC day of grid status or weather.

How an interval is judged:

1. **Row rules**: every row gets a quarantine reason if it cannot be used downstream
   (`metrify.quality.rules` for meter readings; the suite's critical predicates for the
   polled sources).
2. **Great Expectations checkpoint** (`metrify.quality.checkpoint`): the dataset's suites
   (`metrify.quality.expectations`), results and Data Docs under `<METRIFY_HOME>/gx/<dataset>/`.
3. **Verdict** (`publish_verdict`): failing rows go to `quarantine/<dataset>_gate/` with their
   reason (always, also when the gate fails). If a critical expectation failed, the gate raises
   `QualityGateError` naming the expectation, the column, the counts, sample rows and the Data
   Docs page, and no validated output exists for the interval; otherwise the usable rows go to
   `validated/<dataset>/`. A marker `_quality/<dataset>/...json` records the verdict (`status`:
   passed, blocked or released) and the raw files judged, so a partition whose files change is
   judged again (`changed_intervals`).

The warehouse loads `validated/` only, so a blocked interval never reaches staging, facts or
metrics. An operator can release a blocked interval (`write_release`, the DAG
`release_quality_interval`): the release names who, why, and the raw files it was given for;
the gate then publishes the interval's usable rows (the row-level quarantine still applies) with
status `released`, until those raw files change and the interval is judged afresh.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
from pyarrow.fs import FSSpecHandler, PyFileSystem

from metrify import lake, validate
from metrify.config import Settings, load_settings
from metrify.contracts import grid, readings, weather
from metrify.quality.checkpoint import QualityGateError, failure_message, run_checkpoint, run_suites
from metrify.quality.expectations import SOURCE_SUITES, expected_slots, row_reasons
from metrify.quality.rules import evaluate_rows
from metrify.quality.scores import batch_score

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

SOURCE_KEYS = {grid.DATASET: grid.KEY, weather.DATASET: weather.KEY}
SOURCE_TIME_COLUMNS = {grid.DATASET: grid.TIME_COLUMN, weather.DATASET: weather.TIME_COLUMN}


@dataclass(frozen=True, order=True)
class GateInterval:
    """One partition a gate judges: an hour (`hour` set) or a UTC day (`hour` None)."""

    dataset: str
    date: str
    hour: int | None = None

    def __post_init__(self) -> None:
        # every path below is built from these three: check them once, here
        validate.name(self.dataset, "dataset")
        validate.iso_date(self.date, "date")
        if self.hour is not None:
            validate.hour(self.hour, "hour")

    @property
    def parts(self) -> dict[str, str]:
        return {"date": self.date, **({"hour": f"{self.hour:02d}"} if self.hour is not None else {})}

    @property
    def label(self) -> str:
        return self.date if self.hour is None else f"{self.date} hour {self.hour:02d}"

    def quarantine_file(self, root: ObjectStoragePath) -> ObjectStoragePath:
        return lake.partition_path(root, "quarantine", f"{self.dataset}_gate", **self.parts) / "gate.parquet"

    def validated_file(self, root: ObjectStoragePath) -> ObjectStoragePath:
        return lake.partition_path(root, "validated", self.dataset, **self.parts) / "validated.parquet"

    def marker(self, root: ObjectStoragePath) -> ObjectStoragePath:
        return self._json(root / "_quality" / self.dataset)

    def release_file(self, root: ObjectStoragePath) -> ObjectStoragePath:
        return self._json(root / "_quality_releases" / self.dataset)

    def _json(self, base: ObjectStoragePath) -> ObjectStoragePath:
        if self.hour is None:
            return base / f"date={self.date}.json"
        return base / f"date={self.date}" / f"hour={self.hour:02d}.json"


@dataclass(frozen=True)
class Release:
    """An operator's release of a blocked interval, valid for the raw files it was given for."""

    released_by: str
    reason: str
    released_at: str
    raw_files: list[str]
    raw_fingerprint: str


def write_release(
    root: ObjectStoragePath, interval: GateInterval, reason: str, released_by: str, raw_files: list[str]
) -> Release:
    """Record a release (the gate honours it while the interval's raw files stay these)."""
    if len(reason.strip()) < 10:
        raise ValueError(
            f"releasing {interval.dataset} {interval.label} needs a reason of at least 10 characters "
            f"(what was checked, why the data is usable); got {reason!r}"
        )
    if not raw_files:
        raise ValueError(f"{interval.dataset} {interval.label} has no raw files: nothing to release")
    release = Release(
        released_by,
        reason.strip(),
        datetime.now(UTC).isoformat(timespec="seconds"),
        sorted(raw_files),
        lake.fingerprint(root, raw_files),
    )
    lake.write_json(asdict(release), interval.release_file(root))
    return release


def valid_release(root: ObjectStoragePath, interval: GateInterval, raw_files: list[str]) -> Release | None:
    """The interval's release if one exists for exactly these raw files, unchanged (else None)."""
    found = lake.read_json(interval.release_file(root))
    if found is None or found.get("raw_fingerprint") != lake.fingerprint(root, raw_files):
        return None
    return Release(**{k: found[k] for k in Release.__dataclass_fields__})


def verdict(
    root: ObjectStoragePath, interval: GateInterval, passed: bool, raw_files: list[str]
) -> tuple[str, Release | None]:
    """(status, release): passed, released (a critical failure an operator released for these
    raw files) or blocked."""
    if passed:
        return "passed", None
    release = valid_release(root, interval, raw_files)
    if release is None:
        return "blocked", None
    log.warning(
        "%s %s failed a critical expectation but was released by %s at %s: %s",
        interval.dataset,
        interval.label,
        release.released_by,
        release.released_at,
        release.reason,
    )
    return "released", release


def publish_verdict(
    root: ObjectStoragePath,
    interval: GateInterval,
    quarantined: pa.Table | None,
    validated: pa.Table | None,
    report: dict[str, Any],
) -> None:
    """Write a gate's verdict: quarantined rows (or remove a stale quarantine), the validated rows
    if it passed (else remove an older validated copy: a blocked interval keeps none), the marker."""
    quarantine_file = interval.quarantine_file(root)
    if quarantined is not None and quarantined.num_rows:
        lake.write_parquet(quarantined, quarantine_file)
    elif quarantine_file.exists():
        quarantine_file.unlink()  # a re-run over corrected data leaves no stale quarantine
    validated_file = interval.validated_file(root)
    if validated is not None:
        lake.write_parquet(validated, validated_file)
    elif validated_file.exists():
        validated_file.unlink()
    lake.write_json(report, interval.marker(root))


def recent_date_partitions(base: ObjectStoragePath, lookback_days: int) -> list[str]:
    """The `date=` partition names right below `base` (no file listing) at most `lookback_days`
    days older than the newest one."""
    if not base.exists():
        return []
    names = [str(p).rstrip("/").rsplit("/", 1)[-1] for p in base.fs.ls(base.path, detail=False)]
    dates = sorted(n.split("=", 1)[1] for n in names if n.startswith("date="))
    if not dates:
        return []
    oldest = (datetime.fromisoformat(dates[-1]) - timedelta(days=lookback_days)).date().isoformat()
    return [d for d in dates if d >= oldest]


def changed_intervals(
    root: ObjectStoragePath, dataset: str, hourly: bool, lookback_days: int | None = None
) -> list[GateInterval]:
    """Intervals of `raw/<dataset>` whose files changed since the gate last judged them (the
    marker records the fingerprint of the files it saw: names, sizes, modification times).
    `lookback_days` limits the search to the `date=` partitions that many days from the newest
    (meter readings); otherwise every file is listed."""
    base = root / "raw" / dataset
    if lookback_days is None:
        files = lake.list_files(base)
    else:
        files = [
            f for date in recent_date_partitions(base, lookback_days) for f in lake.list_files(base / f"date={date}")
        ]
    by_interval: dict[GateInterval, list[str]] = {}
    for name in files:
        parts = dict(p.split("=", 1) for p in name.split("/") if "=" in p)
        if "date" not in parts or (hourly and "hour" not in parts):
            continue
        try:
            interval = GateInterval(dataset, parts["date"], validate.hour(parts["hour"], "hour") if hourly else None)
        except ValueError as exc:
            log.warning("not a partition the gate judges, left alone: %s (%s)", name, exc)
            continue
        by_interval.setdefault(interval, []).append(name)
    pending = []
    for interval, names in sorted(by_interval.items()):
        marker = lake.read_json(interval.marker(root))
        if marker is None or marker.get("raw_fingerprint") != lake.fingerprint(root, names):
            pending.append(interval)
    return pending


# --------------------------------------------------------------------------- meter readings, hourly


@dataclass
class GateReport:
    date: str
    hour: int
    rows: int
    validated: int
    quarantined: int
    passed: bool  # no critical expectation failed
    status: str  # passed, blocked or released
    score: dict[str, Any]
    failures: list[dict[str, Any]]
    docs_index: str | None
    raw_files: list[str]
    raw_fingerprint: str
    validated_path: str | None
    quarantine_path: str | None
    judged_at: str
    release: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def interval_bounds(date: str, hour: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    start = pd.Timestamp(f"{date}T{hour:02d}:00:00", tz="UTC")
    return start, start + pd.Timedelta(hours=1)


def raw_partition(root: ObjectStoragePath, date: str, hour: int) -> ObjectStoragePath:
    return lake.partition_path(root, "raw", readings.DATASET, date=date, hour=f"{hour:02d}")


def marker_path(root: ObjectStoragePath, date: str, hour: int) -> ObjectStoragePath:
    """The gate's verdict marker of one hour of meter readings."""
    return GateInterval(readings.DATASET, date, hour).marker(root)


def read_interval(root: ObjectStoragePath, date: str, hour: int) -> tuple[pd.DataFrame, list[str]]:
    """Raw rows of one hour partition in delivery order (topic, partition, offset)."""
    path = raw_partition(root, date, hour)
    files = lake.list_files(path)
    table = lake.read_table(path, columns=list(readings.RAW_SCHEMA.names))
    if table is None:
        return readings.RAW_SCHEMA.empty_table().to_pandas(), files
    frame = table.to_pandas()
    frame = frame.sort_values(["topic", "partition", "offset"], kind="stable", ignore_index=True)
    return frame, files


def run_gate(
    date: str, hour: int, settings: Settings | None = None, build_docs: bool = True, now: pd.Timestamp | None = None
) -> GateReport:
    """Judge one hour of raw meter readings; raise QualityGateError if a critical check fails."""
    settings = settings or load_settings()
    root = lake.lake_root(settings)
    interval = GateInterval(readings.DATASET, date, hour)
    start, end = interval_bounds(date, hour)
    frame, files = read_interval(root, date, hour)
    checked = evaluate_rows(frame, start, end, now=now)
    outcome = run_checkpoint(
        frame,
        checked,
        start,
        end,
        gx_home=settings.gx_home / readings.DATASET,
        build_docs=build_docs,
        run_name=f"{date}T{hour:02d}",
    )
    bad = checked["reason"].notna()
    quarantined = None
    if bad.any():
        rows = checked.loc[bad, list(readings.RAW_SCHEMA.names) + ["reason"]].copy()
        rows["gated_at"] = pd.Timestamp.now(tz="UTC")
        quarantined = pa.Table.from_pandas(rows, preserve_index=False)
    due = expected_slots(checked, start, end)
    score = batch_score(checked, expected_readings=checked["meter_id"].nunique() * due)
    score["slots_due"], score["slots_in_interval"] = due, 4
    status, release = verdict(root, interval, outcome.success, files)
    report = GateReport(
        date=date,
        hour=hour,
        rows=len(frame),
        validated=0,
        quarantined=int(bad.sum()),
        passed=outcome.success,
        status=status,
        score=score,
        failures=outcome.failures,
        docs_index=outcome.docs_index,
        raw_files=files,
        raw_fingerprint=lake.fingerprint(root, files),
        validated_path=None,
        quarantine_path=str(interval.quarantine_file(root)) if bad.any() else None,
        judged_at=datetime.now(UTC).isoformat(timespec="seconds"),
        release=None if release is None else asdict(release),
    )
    if status == "blocked":
        publish_verdict(root, interval, quarantined, None, report.as_dict())
        raise QualityGateError(
            failure_message(readings.DATASET, interval.label, outcome, report.quarantined, report.quarantine_path)
        )
    good = checked.loc[~bad, list(readings.RAW_SCHEMA.names)].assign(
        delivered_copies=checked.loc[~bad, "copies"].to_numpy(), corrected=checked.loc[~bad, "conflict"].to_numpy()
    )
    validated = pa.Table.from_pandas(good, preserve_index=False).cast(readings.VALIDATED_SCHEMA)
    report.validated = len(good)
    report.validated_path = str(interval.validated_file(root))
    publish_verdict(root, interval, quarantined, validated, report.as_dict())
    log.info(
        "quality gate %s for %s hour %02d: %d rows, %d validated, %d quarantined, score %s (%s)",
        status,
        date,
        hour,
        report.rows,
        report.validated,
        report.quarantined,
        score["quality_score"],
        score["quality_tier"],
    )
    return report


def pending_intervals(settings: Settings | None = None, lookback_days: int | None = None) -> list[dict[str, Any]]:
    """Hour partitions of raw/meter_readings whose files changed since the gate last judged them,
    among the days the drain still accepts readings for (`METRIFY_LATE_LOOKBACK_DAYS`, counted
    back from the newest raw day, plus one for a reading's day boundary). Older days are gated on
    request (the DAG's `date` parameter)."""
    settings = settings or load_settings()
    days = settings.late_lookback_days + 1 if lookback_days is None else lookback_days
    return [
        {"date": i.date, "hour": i.hour}
        for i in changed_intervals(lake.lake_root(settings), readings.DATASET, hourly=True, lookback_days=days)
    ]


# --------------------------------------------------------------------------- grid status and weather, daily


def read_files(root: ObjectStoragePath, files: list[str]) -> pd.DataFrame | None:
    if not files:
        return None
    data = ds.dataset(files, filesystem=PyFileSystem(FSSpecHandler(root.fs)), format="parquet")
    return data.to_table().to_pandas()


def day_files(root: ObjectStoragePath, dataset: str, date: str) -> list[str]:
    return [f for f in lake.list_files(root / "raw" / dataset) if f"/date={date}/" in f]


def run_source_gate(
    dataset: str, date: str, settings: Settings | None = None, build_docs: bool = True
) -> dict[str, Any]:
    """Judge one UTC day of raw `grid_status` or `weather`; raise QualityGateError on a critical failure."""
    if dataset not in SOURCE_SUITES:
        raise ValueError(f"no quality suite for dataset {dataset!r}; known: {sorted(SOURCE_SUITES)}")
    settings = settings or load_settings()
    root = lake.lake_root(settings)
    interval = GateInterval(dataset, date)
    key = SOURCE_KEYS[dataset]
    files = day_files(root, dataset, date)
    frame = read_files(root, files)
    if frame is None:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in key})
    time_column = SOURCE_TIME_COLUMNS[dataset]
    if "ingested_at" in frame and time_column in frame:
        lag = (frame["ingested_at"] - frame[time_column]).dt.total_seconds() / 60
    else:
        lag = pd.Series(np.nan, index=frame.index)
    frame = frame.assign(ingestion_lag_minutes=lag.round(2))
    suite = SOURCE_SUITES[dataset]()
    outcome = run_suites(
        {dataset: (suite, frame)}, gx_home=settings.gx_home / dataset, build_docs=build_docs, run_name=date
    )
    reasons = row_reasons(frame, suite, key)
    bad = reasons.notna()
    quarantined = None
    if bad.any():
        rows = (
            frame.loc[bad]
            .drop(columns="ingestion_lag_minutes")
            .assign(reason=reasons[bad], gated_at=pd.Timestamp.now(tz="UTC"))
        )
        quarantined = pa.Table.from_pandas(rows, preserve_index=False)
    report: dict[str, Any] = {
        "dataset": dataset,
        "date": date,
        "rows": len(frame),
        "quarantined": int(bad.sum()),
        "validated": 0,
        "passed": outcome.success,
        "failures": outcome.failures,
        "raw_files": files,
        "raw_fingerprint": lake.fingerprint(root, files),
        "docs_index": outcome.docs_index,
    }
    status, release = verdict(root, interval, outcome.success, files)
    report.update(
        status=status,
        judged_at=datetime.now(UTC).isoformat(timespec="seconds"),
        release=None if release is None else asdict(release),
    )
    if status == "blocked":
        publish_verdict(root, interval, quarantined, None, report)
        raise QualityGateError(
            failure_message(
                dataset,
                date,
                outcome,
                report["quarantined"],
                str(interval.quarantine_file(root)) if bad.any() else None,
            )
        )
    good = frame.loc[~bad].drop(columns="ingestion_lag_minutes")
    report["validated"] = len(good)
    publish_verdict(root, interval, quarantined, pa.Table.from_pandas(good, preserve_index=False), report)
    log.info(
        "quality gate %s for %s %s: %d rows, %d validated, %d quarantined",
        status,
        dataset,
        date,
        len(frame),
        len(good),
        report["quarantined"],
    )
    return report


def pending_days(dataset: str, settings: Settings | None = None) -> list[str]:
    """Days of raw/<dataset> whose files changed since the gate last judged them."""
    root = lake.lake_root(settings or load_settings())
    return [i.date for i in changed_intervals(root, dataset, hourly=False)]

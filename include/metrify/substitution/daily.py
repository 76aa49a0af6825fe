"""Substitute values of one business day, from the lake to `substituted/meter_readings/`.

What counts for one Europe/Berlin business day D (`find_gaps`), consistent with `method`:

* **expected**: every quarter-hour of the local day (92 / 96 / 100 on DST days) for every meter
  active in the registry and installed before D (`method.expected_meters`, without meters the
  registry does not know: those are reported by the warehouse as unregistered instead);
* **present**: a validated reading (`validated/meter_readings`, what the gate let through);
* **a gap** is an expected quarter-hour without one, with its reason: `quarantined` when the gate
  quarantined the meter's reading of that quarter-hour (the quarantine keeps the rejected value,
  the substitute completes the day), else `no_reading`;
* an hour the gate **blocked** (a lake hour: the readings whose interval END falls in it) is
  not a gap to fill: its quarter-hours are counted
  (`blocked_by_gate`) and stay unfilled, so the block stays visible until an operator releases it;
* a gap neither method can fill (a `WP` meter without enough own history, a meter without a load
  profile) is counted by reason (`metrify.contracts.substitutes.UNFILLED_REASONS`), never fatal.

`substitute_business_day` writes the day's file (empty when nothing is missing) in one atomic
write, so a rerun or a backfill replaces the day. It reads the validated readings of the
`OWN_PROFILE_WEEKS` weeks before the day (the method's history) from the lake.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from datetime import date as Date
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from metrify import lake
from metrify.config import Settings, load_settings
from metrify.contracts import readings, substitutes, weather
from metrify.contracts.calendar import BUSINESS_TIMEZONE
from metrify.substitution.method import (
    QUARTER_HOUR,
    day_temperatures,
    expected_meters,
    history_start,
    interval_starts,
    substitute_day,
)

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

GAP_COLUMNS = ("meter_id", "interval_start", "gap_reason")


def find_gaps(
    day: Date,
    meters: pd.DataFrame,
    measured: pd.DataFrame,
    quarantined: pd.DataFrame | None = None,
    blocked_hours_utc: Iterable[pd.Timestamp] = (),
    timezone: str = BUSINESS_TIMEZONE,
) -> pd.DataFrame:
    """Every expected quarter-hour of `meters` on local `day` without a validated reading, with
    its reason (`no_reading`, `quarantined`, or `blocked_by_gate` for an hour the gate blocked).

    `measured` and `quarantined` hold meter_id and reading_ts (interval end, UTC); rows of other
    days are ignored. Columns: `GAP_COLUMNS` (interval_start in UTC), sorted.
    """
    for name, frame in (("measured", measured), ("quarantined", quarantined)):
        if frame is not None and not {"meter_id", "reading_ts"} <= set(frame.columns):
            raise ValueError(f"find_gaps: the {name} frame needs meter_id and reading_ts; has {list(frame.columns)}")
    starts = interval_starts(day, timezone)
    grid = pd.MultiIndex.from_product([meters["meter_id"].astype(str), starts], names=["meter_id", "interval_start"])
    have = _keys(measured)
    gaps = grid[~grid.isin(have)].to_frame(index=False)
    bad = _keys(quarantined) if quarantined is not None else pd.MultiIndex.from_arrays([[], []])
    gaps["gap_reason"] = substitutes.GAP_NO_READING
    gaps.loc[pd.MultiIndex.from_frame(gaps[["meter_id", "interval_start"]]).isin(bad), "gap_reason"] = (
        substitutes.GAP_QUARANTINED
    )
    blocked = {pd.Timestamp(h).tz_convert("UTC").floor("h") for h in blocked_hours_utc}
    if blocked:
        # a lake hour holds the readings ending in it: the gate's hour H blocks starts H-0:15..H+0:30
        in_blocked = (gaps["interval_start"] + QUARTER_HOUR).dt.floor("h").isin(blocked)
        gaps.loc[in_blocked, "gap_reason"] = substitutes.UNFILLED_BLOCKED
    return gaps.sort_values(["meter_id", "interval_start"], ignore_index=True)


def _keys(frame: pd.DataFrame) -> pd.MultiIndex:
    """(meter_id, interval start UTC) of readings keyed by their interval end."""
    start = pd.to_datetime(frame["reading_ts"], utc=True) - QUARTER_HOUR
    return pd.MultiIndex.from_arrays([frame["meter_id"].astype(str), start])


def substitutes_of_day(
    day: Date,
    meters: pd.DataFrame,
    history: pd.DataFrame,
    quarantined: pd.DataFrame | None = None,
    blocked_hours_utc: Iterable[pd.Timestamp] = (),
    computed_at: datetime | None = None,
    temperatures: pd.DataFrame | None = None,
) -> tuple[pa.Table, dict[str, Any]]:
    """The day's substitutes as a `SUBSTITUTE_SCHEMA` table, and what was counted: expected,
    measured, gaps by reason, substituted by method, unfilled by reason. `temperatures` are the
    cities' daily mean temperatures (`method.day_temperatures`) for heating meters."""
    blocked = list(blocked_hours_utc)
    gaps = find_gaps(day, meters, history, quarantined, blocked)
    result = substitute_day(day, meters, history, blocked, day_temperatures=temperatures)
    subs = result.substitutes
    subs = subs.assign(interval_start=pd.to_datetime(subs["reading_ts"], utc=True) - QUARTER_HOUR)
    subs = subs.merge(gaps, on=["meter_id", "interval_start"], how="left", validate="one_to_one")
    if subs["gap_reason"].isna().any() or (subs["gap_reason"] == substitutes.UNFILLED_BLOCKED).any():
        raise AssertionError(f"substitutes for {day} fill quarter-hours that are not gaps to fill")
    stamp = pd.Timestamp(computed_at or datetime.now(UTC))
    frame = pd.DataFrame(
        {
            "meter_id": subs["meter_id"].astype(str),
            "business_date": day,
            "interval_start": subs["interval_start"],
            "reading_ts": pd.to_datetime(subs["reading_ts"], utc=True),
            "substitute_kwh": subs["consumption_kwh"].astype(float),
            "method": subs["substitution_method"].astype(str),
            "gap_reason": subs["gap_reason"].astype(str),
            "computed_at": stamp,
        }
    )
    table = pa.Table.from_pandas(frame, schema=substitutes.SUBSTITUTE_SCHEMA, preserve_index=False)
    expected = len(meters) * len(interval_starts(day))
    unfilled = dict(result.unfilled_by_reason)
    if result.blocked_quarter_hours:
        unfilled[substitutes.UNFILLED_BLOCKED] = result.blocked_quarter_hours
    summary = {
        "business_date": day.isoformat(),
        "meters_expected": len(meters),
        "quarter_hours_expected": expected,
        "quarter_hours_measured": expected - len(gaps),
        "gaps": {k: int(v) for k, v in gaps["gap_reason"].value_counts().sort_index().items()},
        "substituted": {k: int(v) for k, v in frame["method"].value_counts().sort_index().items()},
        "unfilled": dict(sorted(unfilled.items())),
    }
    return table, summary


def substitutes_path(root: ObjectStoragePath, day: Date) -> ObjectStoragePath:
    """`substituted/meter_readings/date=<day>/substitutes.parquet` (day = the business day)."""
    return (
        lake.partition_path(root, substitutes.LAYER, substitutes.DATASET, date=day.isoformat()) / substitutes.FILE_NAME
    )


def _utc_dates(first: Date, last: Date) -> list[Date]:
    """UTC dates the local days first..last span (a local day starts on the UTC day before)."""
    return [first - timedelta(days=1) + timedelta(days=i) for i in range((last - first).days + 2)]


def read_validated(root: ObjectStoragePath, days: Iterable[Date]) -> pd.DataFrame:
    """meter_id, reading_ts, consumption_kwh of the validated readings of the UTC `days`."""
    return _read(root / "validated" / readings.DATASET, days, ["meter_id", "reading_ts", "consumption_kwh"])


def read_quarantined(root: ObjectStoragePath, days: Iterable[Date]) -> pd.DataFrame:
    """meter_id, reading_ts, reason of the readings the gate quarantined (row rules) on UTC `days`."""
    frame = _read(root / "quarantine" / f"{readings.DATASET}_gate", days, ["meter_id", "reading_ts", "reason"])
    return frame[frame["meter_id"].notna() & frame["reading_ts"].notna()]


def read_weather(root: ObjectStoragePath, days: Iterable[Date]) -> pd.DataFrame:
    """city, source, observed_at, temperature_celsius of the validated weather of the UTC `days`."""
    columns = ["city", "source", "observed_at", "temperature_celsius"]
    return _read(root / "validated" / weather.DATASET, days, columns, time_column="observed_at")


def _read(
    base: ObjectStoragePath, days: Iterable[Date], columns: list[str], time_column: str = "reading_ts"
) -> pd.DataFrame:
    tables = []
    for day in days:
        for path in lake.list_files(base / f"date={day.isoformat()}"):
            with base.fs.open(path, "rb") as handle:
                tables.append(pq.read_table(handle, columns=columns))
    if not tables:
        types = {c: "datetime64[us, UTC]" if c == time_column else object for c in columns}
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in types.items()})
    frame = pa.concat_tables(tables, promote_options="default").to_pandas()
    frame[time_column] = pd.to_datetime(frame[time_column], utc=True)
    return frame


def _temperatures_or_none(root: ObjectStoragePath, days: list[Date]) -> pd.DataFrame | None:
    """The cities' daily mean temperatures for heating meters; unreadable weather must not fail
    every meter's substitutes, so it is logged and heating meters keep their weekly level."""
    try:
        return day_temperatures(read_weather(root, days))
    except (pa.ArrowInvalid, KeyError) as error:
        log.warning(
            "substitutes: validated weather of %s..%s unreadable (%s); heating meters use their weekly level",
            days[0],
            days[-1],
            error,
        )
        return None


def blocked_hours(root: ObjectStoragePath, days: Iterable[Date]) -> list[pd.Timestamp]:
    """UTC hour starts of meter-reading hours the gate blocked (and nobody released) on `days`."""
    from metrify.quality.verdicts import read_verdicts

    wanted = set(days)
    verdicts = read_verdicts(root, (readings.DATASET,)).to_pandas()
    rows = verdicts[(verdicts["status"] == "blocked") & verdicts["interval_date"].isin(wanted)]
    return [
        pd.Timestamp(d).tz_localize("UTC") + pd.Timedelta(hours=int(h))
        for d, h in zip(rows["interval_date"], rows["interval_hour"], strict=True)
    ]


def substitute_business_day(
    day: Date,
    registry: pd.DataFrame,
    settings: Settings | None = None,
    root: ObjectStoragePath | None = None,
) -> dict[str, Any]:
    """Compute the business day's substitutes from the lake and replace its file; returns the
    counts (`substitutes_of_day`) and the file written."""
    settings = settings or load_settings()
    root = root if root is not None else lake.lake_root(settings)
    meters = expected_meters(registry, (), day)
    window = _utc_dates(history_start(day), day)
    history = read_validated(root, window)
    temperatures = _temperatures_or_none(root, window)
    today = _utc_dates(day, day)
    table, summary = substitutes_of_day(
        day, meters, history, read_quarantined(root, today), blocked_hours(root, today), temperatures=temperatures
    )
    path = substitutes_path(root, day)
    lake.write_parquet(table, path)  # one file per day, replaced whole: reruns never duplicate
    summary["file"] = str(path)
    log.info(
        "substitutes for %s: %d of %d quarter-hours measured; gaps %s; substituted %s; left unfilled %s -> %s",
        day,
        summary["quarter_hours_measured"],
        summary["quarter_hours_expected"],
        summary["gaps"] or "none",
        summary["substituted"] or "none",
        summary["unfilled"] or "none",
        path,
    )
    return summary

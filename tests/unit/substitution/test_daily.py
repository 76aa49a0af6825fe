"""Gap finding and the day's substitutes file: DST days, a silent meter, quarantined readings,
blocked hours, heat pumps without a standard profile, and reruns replacing the day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from metrify import lake
from metrify.contracts import readings, substitutes, weather
from metrify.substitution.daily import (
    find_gaps,
    substitute_business_day,
    substitutes_of_day,
    substitutes_path,
)
from metrify.substitution.method import METHOD_BDEW_PROFILE, METHOD_OWN_PROFILE, interval_starts
from tests.unit.substitution.test_method import DAY, _history, _meters

QH = pd.Timedelta(minutes=15)
COMPUTED_AT = datetime(2026, 11, 19, 1, 30, tzinfo=UTC)


def _quarantined(meter_id: str, starts: pd.DatetimeIndex) -> pd.DataFrame:
    return pd.DataFrame({"meter_id": meter_id, "reading_ts": starts + QH, "reason": "negative import"})


@pytest.mark.parametrize(("day", "quarter_hours"), [(date(2026, 3, 29), 92), (DAY, 96), (date(2026, 10, 25), 100)])
def test_a_meter_without_any_reading_has_every_quarter_hour_of_the_local_day_as_gap(
    day: date, quarter_hours: int
) -> None:
    present = _history("m1", day, day)  # m1 complete, m2 silent all day
    gaps = find_gaps(day, _meters("m1", "m2"), present)
    assert set(gaps["meter_id"]) == {"m2"}
    assert len(gaps) == quarter_hours
    assert gaps["interval_start"].is_unique and set(gaps["gap_reason"]) == {substitutes.GAP_NO_READING}
    local = gaps["interval_start"].dt.tz_convert("Europe/Berlin")
    assert set(local.dt.date) == {day}


def test_readings_of_other_days_do_not_count_as_present() -> None:
    gaps = find_gaps(DAY, _meters("m1"), _history("m1", DAY - timedelta(days=1), DAY - timedelta(days=1)))
    assert len(gaps) == 96


def test_a_quarantined_reading_is_a_gap_with_its_reason_and_gets_filled() -> None:
    hist = _history("m1", DAY - timedelta(weeks=4), DAY)
    starts = interval_starts(DAY)[40:42]
    hist = hist[~hist["reading_ts"].isin(starts + QH)]
    quarantined = _quarantined("m1", starts)
    gaps = find_gaps(DAY, _meters("m1"), hist, quarantined)
    assert list(gaps["gap_reason"]) == [substitutes.GAP_QUARANTINED] * 2

    table, summary = substitutes_of_day(DAY, _meters("m1"), hist, quarantined, computed_at=COMPUTED_AT)
    assert table.schema == substitutes.SUBSTITUTE_SCHEMA
    frame = table.to_pandas()
    assert list(frame["gap_reason"]) == [substitutes.GAP_QUARANTINED] * 2
    assert list(frame["interval_start"]) == list(starts)
    assert (frame["reading_ts"] - frame["interval_start"] == QH).all()
    assert set(frame["method"]) == {METHOD_OWN_PROFILE}
    assert summary["gaps"] == {"quarantined": 2} and summary["quarter_hours_measured"] == 94


def test_a_quarantined_copy_of_a_validated_reading_is_no_gap() -> None:
    present = _history("m1", DAY, DAY)
    assert find_gaps(DAY, _meters("m1"), present, _quarantined("m1", interval_starts(DAY)[:3])).empty


def test_a_blocked_hour_is_a_gap_left_unfilled_and_counted() -> None:
    hist = _history("m1", DAY - timedelta(weeks=4), DAY - timedelta(days=1))  # m1 silent on DAY
    blocked = interval_starts(DAY)[20]  # 04:00 UTC
    gaps = find_gaps(DAY, _meters("m1"), hist, blocked_hours_utc=[blocked])
    assert (gaps["gap_reason"] == substitutes.UNFILLED_BLOCKED).sum() == 4

    table, summary = substitutes_of_day(DAY, _meters("m1"), hist, blocked_hours_utc=[blocked])
    frame = table.to_pandas()
    assert len(frame) == 92
    assert not (frame["reading_ts"].dt.floor("h") == blocked).any()  # the gate's hour: readings ending in it
    assert (frame["interval_start"] == blocked + 3 * QH).any()  # the quarter-hour ending at H+1:00 is not blocked
    assert summary["unfilled"] == {substitutes.UNFILLED_BLOCKED: 4}
    assert summary["substituted"] == {METHOD_OWN_PROFILE: 92}


def test_a_heat_pump_without_own_history_is_left_unfilled_with_its_reason_and_the_day_goes_on() -> None:
    """demandlib has no BDEW profile for WP: no standard profile would be honest, so the meter's
    gaps stay open (counted); the household next to it is filled from its BDEW profile."""
    meters = pd.concat([_meters("hp", load_profile="WP"), _meters("hh")], ignore_index=True)
    table, summary = substitutes_of_day(DAY, meters, _history("other", DAY, DAY))
    frame = table.to_pandas()
    assert set(frame["meter_id"]) == {"hh"} and set(frame["method"]) == {METHOD_BDEW_PROFILE}
    assert summary["unfilled"] == {substitutes.UNFILLED_NO_FALLBACK: 96}


def test_a_heat_pump_with_own_history_is_filled_from_it() -> None:
    hist = _history("hp", DAY - timedelta(weeks=4), DAY - timedelta(days=1))
    table, summary = substitutes_of_day(DAY, _meters("hp", load_profile="WP"), hist)
    assert len(table) == 96 and set(table.column("method").to_pylist()) == {METHOD_OWN_PROFILE}
    assert summary["unfilled"] == {}


def _write(root: Any, layer: str, dataset: str, frame: pd.DataFrame, schema: pa.Schema, name: str) -> None:
    ts = pd.to_datetime(frame["reading_ts"], utc=True)
    for (day, hour), part in frame.groupby([ts.dt.strftime("%Y-%m-%d"), ts.dt.hour]):
        path = lake.partition_path(root, layer, dataset, date=day, hour=f"{hour:02d}") / name
        lake.write_parquet(pa.Table.from_pandas(part, schema=schema, preserve_index=False), path)


def test_the_day_is_written_from_the_lake_and_a_rerun_replaces_it(lake_root: Any) -> None:
    """Validated history and a quarantined reading in the lake's layouts; the gate blocked one hour."""
    hist = _history("m1", DAY - timedelta(weeks=4), DAY)
    starts = interval_starts(DAY)
    gone = starts[[30, 31, 50]] + QH
    kept = hist[~hist["reading_ts"].isin(gone)].copy()
    kept["reading_ts"] = pd.to_datetime(kept["reading_ts"], utc=True)
    schema = pa.schema([readings.VALIDATED_SCHEMA.field(n) for n in ("meter_id", "reading_ts", "consumption_kwh")])
    _write(lake_root, "validated", readings.DATASET, kept, schema, "validated.parquet")
    quarantined = _quarantined("m1", starts[[50]])
    q_schema = pa.schema([*schema, pa.field("reason", pa.string())])
    _write(
        lake_root,
        "quarantine",
        f"{readings.DATASET}_gate",
        quarantined.assign(consumption_kwh=-1.0),
        q_schema,
        "gate.parquet",
    )
    blocked_start = starts[60]
    lake.write_json(
        {"status": "blocked", "date": f"{blocked_start:%Y-%m-%d}", "hour": blocked_start.hour, "rows": 4},
        lake_root / f"_quality/meter_readings/date={blocked_start:%Y-%m-%d}/hour={blocked_start:%H}.json",
    )
    registry = pd.DataFrame(
        {
            "meter_id": ["m1", "m2"],
            "load_profile": ["H25", "H25"],
            "yearly_kwh": [3500.0, 3500.0],
            "installed_date": [DAY - timedelta(days=400), DAY + timedelta(days=1)],  # m2 not yet installed
            "status": ["active", "active"],
        }
    )
    summary = substitute_business_day(DAY, registry, root=lake_root)
    path = substitutes_path(lake_root, DAY)
    assert Path(str(path.path)).name == substitutes.FILE_NAME and f"date={DAY}" in str(path.path)
    frame = pq.read_table(path.path).to_pandas()
    assert sorted(frame["reading_ts"]) == sorted(gone)
    assert dict(zip(frame["reading_ts"], frame["gap_reason"], strict=True))[gone[-1]] == substitutes.GAP_QUARANTINED
    assert summary["meters_expected"] == 1 and summary["quarter_hours_expected"] == 96
    # the blocked hour was measured (4 readings present): nothing to leave unfilled there
    assert summary["unfilled"] == {}

    again = substitute_business_day(DAY, registry, root=lake_root)
    assert lake.list_files(path.parent) == [path.path]
    rerun = pq.read_table(path.path).to_pandas()
    pd.testing.assert_frame_equal(rerun.drop(columns="computed_at"), frame.drop(columns="computed_at"))
    assert again["substituted"] == summary["substituted"]


def test_a_day_without_gaps_gets_an_empty_file_so_the_warehouse_empties_it(lake_root: Any) -> None:
    registry = pd.DataFrame(  # installed on the day: not expected yet
        {
            "meter_id": ["m9"],
            "load_profile": ["H25"],
            "yearly_kwh": [1.0],
            "installed_date": [DAY],
            "status": ["active"],
        }
    )
    summary = substitute_business_day(DAY, registry, root=lake_root)
    assert pq.read_table(substitutes_path(lake_root, DAY).path).num_rows == 0
    assert summary["quarter_hours_expected"] == 0


HEAT_PUMP_IN_BERLIN = pd.DataFrame(
    {
        "meter_id": ["hp"],
        "load_profile": ["WP"],
        "yearly_kwh": [7500.0],
        "city": ["Berlin"],
        "installed_date": [DAY - timedelta(days=400)],
        "status": ["active"],
    }
)


def test_a_heat_pumps_missing_day_follows_that_days_temperature_from_the_lake(lake_root: Any) -> None:
    """A heat pump whose daily energy is 2 kWh plus 1 kWh per heating degree (15 °C minus the day's
    mean), four weeks of 1-14 °C in Berlin, then a -5 °C day without a reading: the substitutes
    add up to that day's 22 kWh, read with the city's temperatures from `validated/weather`."""
    history_days = [DAY - timedelta(days=i) for i in range(28, 0, -1)]
    temperature = {d: 1.0 + (d.toordinal() * 7 % 14) for d in history_days} | {DAY: -5.0}
    frames = []
    for d in history_days:
        starts = interval_starts(d)
        kwh = (2.0 + max(15.0 - temperature[d], 0.0)) / len(starts)
        frames.append(pd.DataFrame({"meter_id": "hp", "reading_ts": starts + QH, "consumption_kwh": kwh}))
    hist = pd.concat(frames, ignore_index=True)
    schema = pa.schema([readings.VALIDATED_SCHEMA.field(n) for n in ("meter_id", "reading_ts", "consumption_kwh")])
    _write(lake_root, "validated", readings.DATASET, hist, schema, "validated.parquet")
    hours = pd.date_range(interval_starts(history_days[0])[0], interval_starts(DAY)[-1], freq="h")
    observed = pd.DataFrame(
        {
            "city": "Berlin",
            "source": "dwd",
            "observed_at": hours,
            "temperature_celsius": [temperature[h.tz_convert("Europe/Berlin").date()] for h in hours],
        }
    )
    weather_schema = pa.schema([weather.WEATHER_SCHEMA.field(n) for n in observed.columns])
    for utc_day, part in observed.groupby(observed["observed_at"].dt.strftime("%Y-%m-%d")):
        path = lake.partition_path(lake_root, "validated", weather.DATASET, date=utc_day) / "validated.parquet"
        lake.write_parquet(pa.Table.from_pandas(part, schema=weather_schema, preserve_index=False), path)
    registry = HEAT_PUMP_IN_BERLIN
    summary = substitute_business_day(DAY, registry, root=lake_root)
    frame = pq.read_table(substitutes_path(lake_root, DAY).path).to_pandas()
    assert summary["substituted"] == {METHOD_OWN_PROFILE: 96}
    assert frame["substitute_kwh"].sum() == pytest.approx(22.0, rel=1e-6)


def test_unreadable_weather_leaves_heating_meters_their_weekly_level_and_says_so(lake_root: Any, caplog) -> None:
    hist = _history("hp", DAY - timedelta(weeks=4), DAY - timedelta(days=1))
    schema = pa.schema([readings.VALIDATED_SCHEMA.field(n) for n in ("meter_id", "reading_ts", "consumption_kwh")])
    _write(lake_root, "validated", readings.DATASET, hist, schema, "validated.parquet")
    broken = pa.table({"city": ["Berlin"], "observed_at": [pd.Timestamp(f"{DAY} 10:00", tz="UTC")]})  # no source
    lake.write_parquet(
        broken, lake.partition_path(lake_root, "validated", weather.DATASET, date=str(DAY)) / "x.parquet"
    )
    registry = HEAT_PUMP_IN_BERLIN
    with caplog.at_level("WARNING"):
        summary = substitute_business_day(DAY, registry, root=lake_root)
    assert summary["substituted"] == {METHOD_OWN_PROFILE: 96}
    assert "validated weather" in caplog.text and "unreadable" in caplog.text and "source" in caplog.text

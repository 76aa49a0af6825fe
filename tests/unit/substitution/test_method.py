"""The substitute-value method: own profile, BDEW fallback, DST days, blocked hours, reruns."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from metrify.substitution import method
from metrify.substitution.bdew import profile_kwh
from metrify.substitution.method import (
    METHOD_BDEW_PROFILE,
    METHOD_OWN_PROFILE,
    expected_meters,
    interval_starts,
    substitute_day,
)

DAY = date(2026, 11, 18)  # a Wednesday


def _meters(*ids: str, load_profile: str = "H25", yearly_kwh: float = 3500.0) -> pd.DataFrame:
    return pd.DataFrame({"meter_id": list(ids), "load_profile": load_profile, "yearly_kwh": yearly_kwh})


def _history(meter_id: str, first: date, last: date, kwh_of_slot=lambda slot: 0.1 + slot / 1000) -> pd.DataFrame:
    """Readings of `meter_id` for local days first..last; value depends on the local quarter-hour."""
    frames = []
    d = first
    while d <= last:
        starts = interval_starts(d)
        local = starts.tz_convert("Europe/Berlin")
        slots = np.asarray(local.hour * 4 + local.minute // 15)
        frames.append(
            pd.DataFrame(
                {
                    "meter_id": meter_id,
                    "reading_ts": starts + pd.Timedelta(minutes=15),
                    "consumption_kwh": [kwh_of_slot(s) for s in slots],
                }
            )
        )
        d += timedelta(days=1)
    return pd.concat(frames, ignore_index=True)


def test_own_profile_fills_a_gap_with_the_meters_own_shape() -> None:
    hist = _history("m1", DAY - timedelta(weeks=4), DAY)
    starts = interval_starts(DAY)
    gap_ts = starts[40:44] + pd.Timedelta(minutes=15)  # 10:00-11:00 local
    hist = hist[~((hist["meter_id"] == "m1") & hist["reading_ts"].isin(gap_ts))]
    result = substitute_day(DAY, _meters("m1"), hist)
    subs = result.substitutes
    assert list(subs["reading_ts"]) == list(gap_ts)
    assert set(subs["substitution_method"]) == {METHOD_OWN_PROFILE}
    # the shape is the meter's own; the H25 standard profile's slow November drift moves it ~1 %
    np.testing.assert_allclose(subs["consumption_kwh"], [0.1 + s / 1000 for s in range(40, 44)], rtol=0.02)


def test_own_profile_is_scaled_to_the_recent_level() -> None:
    old = _history("m1", DAY - timedelta(weeks=4), DAY - timedelta(days=8))
    recent = _history("m1", DAY - timedelta(days=7), DAY - timedelta(days=1), lambda s: 2 * (0.1 + s / 1000))
    result = substitute_day(DAY, _meters("m1"), pd.concat([old, recent]))
    # the median of the 4 Wednesdays is the old level (3 of 4 old), the last week doubles it
    wed = result.substitutes.iloc[40]["consumption_kwh"]
    assert wed == pytest.approx(2 * (0.1 + 40 / 1000), rel=0.2)
    assert wed > 1.5 * (0.1 + 40 / 1000)


def test_own_profile_follows_the_standard_profiles_change_into_a_new_month() -> None:
    """A PV household (P25) that used exactly its standard profile all September: its 1 October
    substitutes are October's standard values (about 40 % more than September's), not September's."""
    day = date(2026, 10, 1)
    starts = pd.date_range(
        interval_starts(day - timedelta(weeks=4))[0], interval_starts(day)[0], freq="15min", inclusive="left"
    )
    standard = pd.Series(profile_kwh("P25", 4200.0, starts), index=starts)
    hist = pd.DataFrame(
        {"meter_id": "m1", "reading_ts": starts + pd.Timedelta(minutes=15), "consumption_kwh": standard.to_numpy()}
    )
    result = substitute_day(day, _meters("m1", load_profile="P25", yearly_kwh=4200.0), hist)
    subs = result.substitutes
    assert set(subs["substitution_method"]) == {METHOD_OWN_PROFILE}
    october = profile_kwh("P25", 4200.0, interval_starts(day))
    np.testing.assert_allclose(subs["consumption_kwh"], october, rtol=1e-9)
    last_week = standard[standard.index >= interval_starts(day - timedelta(days=7))[0]]
    assert subs["consumption_kwh"].sum() > 1.2 * last_week.sum() / 7


def test_bdew_fallback_without_own_history_scales_to_yearly_kwh() -> None:
    hist = _history("m1", DAY - timedelta(days=2), DAY - timedelta(days=1))  # too little history
    result = substitute_day(DAY, _meters("m1", yearly_kwh=3650.0), hist)
    subs = result.substitutes
    assert len(subs) == 96
    assert set(subs["substitution_method"]) == {METHOD_BDEW_PROFILE}
    # a November weekday of an H25 household: about the yearly average of 10 kWh/day
    assert 6.0 < subs["consumption_kwh"].sum() < 16.0


def test_a_meter_missing_the_whole_day_gets_all_96_quarter_hours() -> None:
    hist = _history("m1", DAY - timedelta(weeks=4), DAY - timedelta(days=1))
    subs = substitute_day(DAY, _meters("m1"), hist).substitutes
    assert len(subs) == 96
    assert set(subs["substitution_method"]) == {METHOD_OWN_PROFILE}
    assert subs["reading_ts"].is_unique


@pytest.mark.parametrize(("day", "quarter_hours"), [(date(2026, 3, 29), 92), (date(2026, 10, 25), 100)])
def test_dst_days_get_their_local_number_of_quarter_hours(day: date, quarter_hours: int) -> None:
    hist = _history("m1", day - timedelta(weeks=4), day - timedelta(days=1))
    subs = substitute_day(day, _meters("m1"), hist).substitutes
    assert len(subs) == quarter_hours
    assert subs["reading_ts"].is_unique
    assert subs["consumption_kwh"].notna().all()


def test_a_blocked_hour_is_not_filled_and_is_counted() -> None:
    hist = _history("m1", DAY - timedelta(weeks=4), DAY - timedelta(days=1))
    blocked = interval_starts(DAY)[8]  # a UTC hour start
    result = substitute_day(DAY, _meters("m1"), hist, blocked_hours_utc=[blocked])
    assert result.blocked_quarter_hours == 4
    assert len(result.substitutes) == 92
    # the gate's hour is a lake hour: the readings ENDING in it
    assert not (result.substitutes["reading_ts"].dt.floor("h") == blocked).any()


def test_substitutes_never_coincide_with_a_measured_reading() -> None:
    hist = _history("m1", DAY - timedelta(weeks=4), DAY)
    hist = hist.drop(index=hist.index[-10:])
    subs = substitute_day(DAY, _meters("m1"), hist).substitutes
    assert len(subs) == 10
    measured = set(zip(hist["meter_id"], hist["reading_ts"], strict=True))
    assert not any((m, t) in measured for m, t in zip(subs["meter_id"], subs["reading_ts"], strict=True))


def test_rerun_gives_the_same_substitutes() -> None:
    hist = _history("m1", DAY - timedelta(weeks=4), DAY - timedelta(days=1))
    meters = _meters("m1", "m2")
    first = substitute_day(DAY, meters, hist).substitutes
    again = substitute_day(DAY, meters, hist).substitutes
    pd.testing.assert_frame_equal(first, again)
    assert set(first["substitution_method"]) == {METHOD_OWN_PROFILE, METHOD_BDEW_PROFILE}


def test_unregistered_meter_without_history_is_left_unfilled() -> None:
    meters = pd.DataFrame({"meter_id": ["x"], "load_profile": [None], "yearly_kwh": [None]})
    result = substitute_day(DAY, meters, _history("m1", DAY, DAY))
    assert result.substitutes.empty
    assert result.unfillable_quarter_hours == 96


def test_expected_meters_are_active_installed_before_the_day_plus_recently_seen() -> None:
    registry = pd.DataFrame(
        {
            "meter_id": ["a", "b", "c", "d"],
            "load_profile": ["H25", "G25", "H25", "L25"],
            "yearly_kwh": [1.0, 2.0, 3.0, 4.0],
            "installed_date": [DAY - timedelta(days=9), DAY, DAY - timedelta(days=9), DAY - timedelta(days=9)],
            "status": ["active", "active", "decommissioned", "active"],
        }
    )
    frame = expected_meters(registry, ["c", "z"], DAY)
    assert list(frame["meter_id"]) == ["a", "c", "d", "z"]
    assert frame.set_index("meter_id").loc["c", "load_profile"] == "H25"


def test_missing_column_is_named() -> None:
    with pytest.raises(ValueError, match="yearly_kwh"):
        substitute_day(DAY, pd.DataFrame({"meter_id": [], "load_profile": []}), _history("m1", DAY, DAY))


def test_thresholds_are_defined_once() -> None:
    assert method.OWN_PROFILE_WEEKS >= method.MIN_SAME_WEEKDAY_VALUES


def test_day_temperatures_prefer_dwd_per_clock_hour_and_need_most_hours_of_the_local_day() -> None:
    berlin_day = pd.date_range("2026-11-17 23:00", periods=24, freq="h", tz="UTC")  # local 18 Nov
    dwd = pd.DataFrame({"city": "Berlin", "source": "dwd", "observed_at": berlin_day, "temperature_celsius": 4.0})
    # OpenWeatherMap's current weather is stamped when observed: 10:37 stands for the hour 10:00
    owm = dwd.assign(
        source="openweathermap", observed_at=berlin_day + pd.Timedelta(minutes=37), temperature_celsius=9.0
    )
    # Hamburg: 9 hours from both sources, 18 observations: still too few hours for a day's mean
    few = pd.concat([dwd.iloc[:9], owm.iloc[:9]]).assign(city="Hamburg")
    days = method.day_temperatures(pd.concat([owm, dwd, few]))
    assert days.to_dict("records") == [{"city": "Berlin", "local_date": DAY, "temperature_celsius": 4.0}]
    only_owm = method.day_temperatures(owm)
    assert only_owm["temperature_celsius"].tolist() == [9.0]


def test_a_heat_pump_whose_energy_falls_with_the_cold_keeps_its_weekly_level() -> None:
    """Noise, not heating: 10 kWh on 16 °C days and 8 kWh on 14.5 °C days would fit a negative
    slope and predict 2 kWh for a 13 °C day; the weekly level is used instead."""
    days = [DAY - timedelta(days=i) for i in range(28, 0, -1)]
    temperature = {d: 16.0 if d.toordinal() % 2 else 14.5 for d in days} | {DAY: 13.0}
    frames = [_history("hp", d, d, lambda slot, d=d: (10.0 if temperature[d] == 16.0 else 8.0) / 96) for d in days]
    hist = pd.concat(frames, ignore_index=True)
    meters = _meters("hp", load_profile="WP").assign(city="Berlin")
    temps = pd.DataFrame(
        {"city": "Berlin", "local_date": list(temperature), "temperature_celsius": list(temperature.values())}
    )
    with_weather = substitute_day(DAY, meters, hist, day_temperatures=temps).substitutes
    without = substitute_day(DAY, meters, hist).substitutes
    assert len(with_weather) == 96
    pd.testing.assert_frame_equal(with_weather, without)

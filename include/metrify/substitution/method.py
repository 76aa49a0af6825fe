"""Substitute values (Ersatzwerte) for a meter's missing quarter-hours of one business day.

A quarter-hour of a business day (Europe/Berlin, by interval start) is missing for an expected
meter when it has no validated reading. Readings the quality gate quarantined count as missing:
the quarantine keeps the rejected raw value with its reason, the substitute gives the day a
complete, flagged total. Quarter-hours of an hour the gate BLOCKED (a lake hour: the readings
whose `reading_ts`, the interval end, falls in it) are never filled: the block stays visible as
a block (they are counted in `SubstitutionResult.blocked_quarter_hours`).

Methods, tried per meter and quarter-hour in this order (names in `substitution_method`):

* `own_profile` - the meter's own profile relative to its class's BDEW standard load profile:
  each past measured value divided by the standard profile's value of its quarter-hour, the
  median of those ratios at the same local weekday and quarter-hour over the last
  `OWN_PROFILE_WEEKS` weeks (at least `MIN_SAME_WEEKDAY_VALUES` values), times the standard
  profile's value of the missing quarter-hour, scaled by the meter's recent level: measured
  energy of the last `LEVEL_DAYS` days divided by this profile's energy at the same quarter-hours
  (needs `MIN_LEVEL_COVERAGE` of those quarter-hours measured; ratio clipped to
  `LEVEL_RATIO_BOUNDS`). Relative to the standard profile, the profile's changes from month to
  month and on holidays carry over into the substitute (the 2025 profiles change by month: P25's
  October quarter-hours average 43 % more than September's). A class without a standard profile
  (`WP`) or a meter without a class uses its plain measured values. For a `WP` meter (heat pumps
  and electric heating: load follows the outdoor temperature) the level is the day's, not the last
  week's, when the day's mean temperature at the meter's city is known (`day_temperatures`): its
  daily energy over the last `OWN_PROFILE_WEEKS` weeks, fitted by least squares to the heating
  degrees `HEATING_LIMIT_C` minus the day's mean temperature (at least `MIN_HEATING_FIT_DAYS`
  complete days with a temperature; a fit that falls with the heating degrees is not used),
  predicts the day's energy, and the level is that over the own profile's energy of the day
  (clipped to `HEATING_LEVEL_BOUNDS`).
* `bdew_profile` - the meter's BDEW standard load profile scaled to its registered `yearly_kwh`.

A quarter-hour neither method can fill stays missing and is counted in
`SubstitutionResult.unfillable_quarter_hours`, by reason in `unfilled_by_reason`:
`no_fallback_profile` for a class demandlib has no BDEW profile for (`WP`, heat pumps and
electric heating: temperature-driven, so no standard profile would be honest; such a meter is
filled from its own profile once it has `MIN_SAME_WEEKDAY_VALUES` weeks of history), and
`no_registry_profile` for a meter without load profile or yearly_kwh (unregistered). One such
meter never fails the day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date as Date
from datetime import timedelta

import numpy as np
import pandas as pd

from metrify.contracts.calendar import BUSINESS_TIMEZONE
from metrify.contracts.substitutes import UNFILLED_NO_FALLBACK, UNFILLED_NO_PROFILE
from metrify.contracts.weather import preferred_per_city_hour
from metrify.substitution.bdew import has_profile, profile_kwh

# --- thresholds of the method, defined once ---
OWN_PROFILE_WEEKS = 4
MIN_SAME_WEEKDAY_VALUES = 2
LEVEL_DAYS = 7
MIN_LEVEL_COVERAGE = 0.5
LEVEL_RATIO_BOUNDS = (0.5, 2.0)
HEATING_CLASS = "WP"
HEATING_LIMIT_C = 15.0  # daily mean outdoor temperature above which a building is not heated
MIN_HEATING_FIT_DAYS = 14
HEATING_LEVEL_BOUNDS = (0.25, 4.0)  # a cold spell may ask far more than the 4-week median day
MIN_TEMPERATURE_HOURS = 18  # observed hours a local day's mean temperature needs
DAY_TEMPERATURE_COLUMNS = ("city", "local_date", "temperature_celsius")

METHOD_OWN_PROFILE = "own_profile"
METHOD_BDEW_PROFILE = "bdew_profile"
METHODS = (METHOD_OWN_PROFILE, METHOD_BDEW_PROFILE)

QUARTER_HOUR = pd.Timedelta(minutes=15)
SUBSTITUTE_COLUMNS = ("meter_id", "reading_ts", "consumption_kwh", "substitution_method")


@dataclass(frozen=True)
class SubstitutionResult:
    """Substitutes of one business day and what was deliberately left unfilled."""

    substitutes: pd.DataFrame  # SUBSTITUTE_COLUMNS; reading_ts = interval end (UTC), as readings
    blocked_quarter_hours: int
    unfillable_quarter_hours: int
    unfilled_by_reason: dict[str, int] = field(default_factory=dict)  # UNFILLED_NO_FALLBACK / _NO_PROFILE


def history_start(day: Date) -> Date:
    """First local day of history the method reads for `day`."""
    return day - timedelta(weeks=OWN_PROFILE_WEEKS)


def interval_starts(day: Date, timezone: str = BUSINESS_TIMEZONE) -> pd.DatetimeIndex:
    """UTC starts of the 92/96/100 quarter-hours of a local day."""
    start = pd.Timestamp(day).tz_localize(timezone)
    end = pd.Timestamp(day + timedelta(days=1)).tz_localize(timezone)
    return pd.date_range(start.tz_convert("UTC"), end.tz_convert("UTC"), freq="15min", inclusive="left")


def expected_meters(registry: pd.DataFrame, recently_seen: Iterable[str], day: Date) -> pd.DataFrame:
    """Meters expected to report on `day`: active registered meters installed before it, plus meters
    seen in the lake recently (unregistered ones get no load profile). Columns: meter_id,
    load_profile, yearly_kwh, and city when the registry has it."""
    installed = pd.to_datetime(registry["installed_date"]).dt.date
    active = registry[(registry["status"] == "active") & (installed < day)]
    columns = ["load_profile", "yearly_kwh", *(["city"] if "city" in registry.columns else [])]
    frame = active[["meter_id", *columns]]
    seen = sorted(set(recently_seen) - set(frame["meter_id"]))
    known = registry.set_index("meter_id")[columns]
    extra = pd.DataFrame({"meter_id": seen})
    extra = extra.join(known, on="meter_id")
    return pd.concat([frame, extra], ignore_index=True).sort_values("meter_id", ignore_index=True)


def day_temperatures(observations: pd.DataFrame, timezone: str = BUSINESS_TIMEZONE) -> pd.DataFrame:
    """Mean temperature per city and local day (`DAY_TEMPERATURE_COLUMNS`) from weather
    observations (city, source, observed_at, temperature_celsius): one value per city and clock
    hour (an observation stands for the hour it falls in, e.g. OpenWeatherMap's current weather at
    10:37), from the first source in the order of `metrify.contracts.weather.SOURCES`; days with
    fewer than `MIN_TEMPERATURE_HOURS` observed hours are left out."""
    frame = observations.dropna(subset=["temperature_celsius"])
    if frame.empty:
        return pd.DataFrame(
            {c: pd.Series(dtype=float if c == "temperature_celsius" else object) for c in DAY_TEMPERATURE_COLUMNS}
        )
    hourly = preferred_per_city_hour(frame)
    hourly = hourly.assign(local_date=hourly["hour"].dt.tz_convert(timezone).dt.date)
    days = hourly.groupby(["city", "local_date"])["temperature_celsius"].agg(["mean", "size"]).reset_index()
    days = days[days["size"] >= MIN_TEMPERATURE_HOURS]
    return days.rename(columns={"mean": "temperature_celsius"})[list(DAY_TEMPERATURE_COLUMNS)].reset_index(drop=True)


def _slot_keys(starts_utc: pd.DatetimeIndex | pd.Series, timezone: str) -> pd.DataFrame:
    """Local weekday and quarter-hour of day (wall time) of UTC interval starts."""
    local = pd.DatetimeIndex(starts_utc).tz_convert(timezone)
    return pd.DataFrame({"weekday": local.day_of_week, "slot": local.hour * 4 + local.minute // 15})


def substitute_day(
    day: Date,
    meters: pd.DataFrame,
    history: pd.DataFrame,
    blocked_hours_utc: Iterable[pd.Timestamp] = (),
    timezone: str = BUSINESS_TIMEZONE,
    day_temperatures: pd.DataFrame | None = None,
) -> SubstitutionResult:
    """Substitutes for every missing quarter-hour of the expected `meters` on local `day`.

    `history` holds validated readings (meter_id, reading_ts = interval end UTC, consumption_kwh)
    of `day` and at least `OWN_PROFILE_WEEKS` weeks before it; `blocked_hours_utc` are the UTC
    lake hours the quality gate blocked (partitions by reading_ts, the interval end);
    `day_temperatures` (`DAY_TEMPERATURE_COLUMNS`: mean °C per city and local day) give heating
    meters the day's level, when `meters` has a `city` column. A rerun with the same inputs gives
    the same frame.
    """
    for column in ("meter_id", "load_profile", "yearly_kwh"):
        if column not in meters.columns:
            raise ValueError(f"substitute_day: meters frame lacks column {column!r}")
    for column in ("meter_id", "reading_ts", "consumption_kwh"):
        if column not in history.columns:
            raise ValueError(f"substitute_day: history frame lacks column {column!r}")

    starts = interval_starts(day, timezone)
    day_start, day_end = starts[0], starts[-1] + QUARTER_HOUR
    hist = history[["meter_id", "reading_ts", "consumption_kwh"]].copy()
    hist["start"] = pd.to_datetime(hist["reading_ts"], utc=True) - QUARTER_HOUR
    hist = hist[hist["meter_id"].isin(meters["meter_id"]) & hist["consumption_kwh"].notna()]

    # missing = expected (meter x quarter-hour) without a validated reading
    grid = pd.MultiIndex.from_product([meters["meter_id"], starts], names=["meter_id", "start"]).to_frame(index=False)
    measured_today = hist[(hist["start"] >= day_start) & (hist["start"] < day_end)]
    have = pd.MultiIndex.from_frame(measured_today[["meter_id", "start"]])
    missing = grid[~pd.MultiIndex.from_frame(grid).isin(have)].reset_index(drop=True)

    blocked = {pd.Timestamp(h).tz_convert("UTC").floor("h") for h in blocked_hours_utc}
    # the gate judges lake hours, which hold the readings ENDING in them (reading_ts)
    blocked_qh = (missing["start"] + QUARTER_HOUR).dt.floor("h").isin(blocked)
    is_blocked = blocked_qh if blocked else pd.Series(False, index=missing.index)
    n_blocked = int(is_blocked.sum())
    missing = missing[~is_blocked].reset_index(drop=True)
    if missing.empty:
        return SubstitutionResult(_empty(), n_blocked, 0)

    # own profile: median ratio to the standard profile per (meter, weekday, slot) over the last
    # OWN_PROFILE_WEEKS weeks
    lookback = day_start - pd.Timedelta(weeks=OWN_PROFILE_WEEKS)
    past = hist[(hist["start"] >= lookback) & (hist["start"] < day_start)].reset_index(drop=True)
    past = pd.concat([past, _slot_keys(past["start"], timezone)], axis=1)
    standard = _StandardProfiles(meters, pd.date_range(lookback, day_end, freq="15min", inclusive="left"))
    past["standard"] = standard.at(past)
    past["ratio"] = past["consumption_kwh"] / past["standard"]
    stats = past.groupby(["meter_id", "weekday", "slot"])["ratio"].agg(["median", "count"])
    profile = stats.loc[stats["count"] >= MIN_SAME_WEEKDAY_VALUES, "median"].rename("profile_ratio")

    # level: measured energy of the last LEVEL_DAYS days / own profile at the same quarter-hours
    level_start = day_start - pd.Timedelta(days=LEVEL_DAYS)
    recent = past[past["start"] >= level_start].join(profile, on=["meter_id", "weekday", "slot"])
    recent = recent[recent["profile_ratio"].notna()]
    recent["profile_kwh"] = recent["profile_ratio"] * recent["standard"]
    sums = recent.groupby("meter_id").agg(
        measured=("consumption_kwh", "sum"), prof=("profile_kwh", "sum"), n=("slot", "size")
    )
    sums = sums[(sums["n"] >= MIN_LEVEL_COVERAGE * LEVEL_DAYS * 96) & (sums["prof"] > 0)]
    level = (sums["measured"] / sums["prof"]).clip(*LEVEL_RATIO_BOUNDS).rename("level")
    if day_temperatures is not None and "city" in meters.columns:
        heating = _heating_levels(day, meters, past, profile, day_temperatures, timezone)
        level = heating.combine_first(level).rename("level")

    missing = pd.concat([missing, _slot_keys(missing["start"], timezone)], axis=1)
    missing = missing.join(profile, on=["meter_id", "weekday", "slot"]).join(level, on="meter_id")
    own = missing["profile_ratio"].notna() & missing["level"].notna()
    own_kwh = missing["profile_ratio"] * standard.at(missing) * missing["level"]
    missing["consumption_kwh"] = np.where(own, own_kwh, np.nan)
    missing["substitution_method"] = pd.Series(METHOD_OWN_PROFILE, index=missing.index).where(own)

    # fallback: BDEW profile scaled to yearly_kwh
    info = meters.set_index("meter_id")[["load_profile", "yearly_kwh"]]
    todo = missing[~own].join(info, on="meter_id")
    has_class = todo["load_profile"].notna() & todo["yearly_kwh"].notna()
    fallback = has_class & todo["load_profile"].map(lambda p: isinstance(p, str) and has_profile(p)).astype(bool)
    unfilled = {UNFILLED_NO_PROFILE: int((~has_class).sum()), UNFILLED_NO_FALLBACK: int((has_class & ~fallback).sum())}
    todo = todo[fallback]
    for load_profile, rows in todo.groupby("load_profile"):
        shape = pd.Series(profile_kwh(str(load_profile), 1.0, starts), index=starts)
        per_kwh = shape.reindex(pd.DatetimeIndex(rows["start"])).to_numpy()
        missing.loc[rows.index, "consumption_kwh"] = per_kwh * rows["yearly_kwh"].astype(float).to_numpy()
        missing.loc[rows.index, "substitution_method"] = METHOD_BDEW_PROFILE

    filled = missing[missing["substitution_method"].notna()]
    unfillable = len(missing) - len(filled)
    out = pd.DataFrame(
        {
            "meter_id": filled["meter_id"].astype(str),
            "reading_ts": filled["start"] + QUARTER_HOUR,
            "consumption_kwh": filled["consumption_kwh"].astype(float),
            "substitution_method": filled["substitution_method"].astype(str),
        }
    ).sort_values(["meter_id", "reading_ts"], ignore_index=True)
    return SubstitutionResult(out, n_blocked, unfillable, {k: v for k, v in unfilled.items() if v})


def _heating_levels(
    day: Date,
    meters: pd.DataFrame,
    past: pd.DataFrame,
    profile: pd.Series,
    day_temperatures: pd.DataFrame,
    timezone: str,
) -> pd.Series:
    """The day's level of each heating-class meter from its daily energy's fit to heating degrees
    (see the module docstring); meters without enough data are left out (the weekly level holds)."""
    missing = set(DAY_TEMPERATURE_COLUMNS) - set(day_temperatures.columns)
    if missing:
        raise ValueError(f"substitute_day: day_temperatures lacks columns {sorted(missing)}")
    heating = meters[meters["load_profile"] == HEATING_CLASS].set_index("meter_id")["city"].dropna()
    temperature = day_temperatures.set_index(["city", "local_date"])["temperature_celsius"]
    rows = past[past["meter_id"].isin(heating.index)]
    daily = (
        rows.assign(local_date=rows["start"].dt.tz_convert(timezone).dt.date)
        .groupby(["meter_id", "local_date"])
        .agg(kwh=("consumption_kwh", "sum"), quarter_hours=("slot", "size"))
        .reset_index()
    )
    day_length = {d: len(interval_starts(d, timezone)) for d in daily["local_date"].unique()}
    daily = daily[daily["quarter_hours"] == daily["local_date"].map(day_length)]  # complete local days only
    day_slots = _slot_keys(interval_starts(day, timezone), timezone)
    with_profile = set(profile.index.get_level_values("meter_id"))
    levels = {}
    for meter_id, days in daily.groupby("meter_id"):
        city = heating[meter_id]
        if (city, day) not in temperature.index or meter_id not in with_profile:
            continue
        known = days[[(city, d) in temperature.index for d in days["local_date"]]]
        if len(known) < MIN_HEATING_FIT_DAYS:
            continue
        degrees = np.clip(
            HEATING_LIMIT_C - temperature.loc[[(city, d) for d in known["local_date"]]].to_numpy(), 0, None
        )
        design = np.column_stack([np.ones(len(degrees)), degrees])
        (base, per_degree), *_ = np.linalg.lstsq(design, known["kwh"].to_numpy(), rcond=None)
        if per_degree < 0:  # noise, not heating: the weekly level holds
            continue
        predicted = base + per_degree * max(HEATING_LIMIT_C - float(temperature.loc[(city, day)]), 0.0)
        own_day = day_slots.join(profile.loc[meter_id], on=["weekday", "slot"])["profile_ratio"]
        if own_day.notna().all() and own_day.sum() > 0 and predicted > 0:
            levels[meter_id] = float(np.clip(predicted / own_day.sum(), *HEATING_LEVEL_BOUNDS))
    return pd.Series(levels, dtype=float, name="level")


class _StandardProfiles:
    """The BDEW standard profile of each meter's class over a window of quarter-hours, in kWh per
    quarter-hour and yearly kWh; 1.0 for a meter whose class has none (`WP`) or without a class."""

    def __init__(self, meters: pd.DataFrame, window: pd.DatetimeIndex) -> None:
        self._class_of = meters.set_index("meter_id")["load_profile"]
        classes = {c for c in self._class_of.dropna().unique() if isinstance(c, str) and has_profile(c)}
        self._values = {c: pd.Series(profile_kwh(c, 1.0, window), index=window) for c in sorted(classes)}

    def at(self, frame: pd.DataFrame) -> pd.Series:
        """The standard value at each row's meter (`meter_id`) and interval start (`start`)."""
        classes = frame["meter_id"].map(self._class_of)
        values = pd.Series(1.0, index=frame.index)
        for name, series in self._values.items():
            rows = classes == name
            if rows.any():
                values[rows] = series.reindex(pd.DatetimeIndex(frame.loc[rows, "start"])).to_numpy()
        return values


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "meter_id": pd.Series(dtype=str),
            "reading_ts": pd.Series(dtype="datetime64[us, UTC]"),
            "consumption_kwh": pd.Series(dtype=float),
            "substitution_method": pd.Series(dtype=str),
        }
    )

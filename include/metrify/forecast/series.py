"""What each forecast series is made of: its meters, its load history and its temperature.

A series is a federal state (`region` in the registry) or a control area (`grid_operator`):
its load is the summed validated consumption (kWh per quarter-hour) of the meters registered in
it, its temperature the mean over the cities of those meters: observations over the history,
the latest weather forecast issued before the run over the target day (DWD first, then
OpenWeatherMap). Plain pandas functions, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date as Date
from datetime import datetime, timedelta

import pandas as pd

from metrify.contracts.calendar import BUSINESS_TIMEZONE, QUARTER_HOUR
from metrify.contracts.weather import preferred_per_city_hour

#: registry column each series kind groups by (`metrify.contracts.forecast.SERIES_KINDS`)
REGISTRY_COLUMN = {"region": "region", "control_area": "grid_operator"}


@dataclass(frozen=True)
class SeriesMembers:
    """The meters and cities of one series."""

    kind: str
    name: str
    meter_ids: frozenset[str]
    cities: tuple[str, ...]


@dataclass
class SeriesInputs:
    """What the model gets for one series, and why it may have to fall back."""

    members: SeriesMembers
    history: pd.Series
    temperature: pd.Series
    notes: list[str] = field(default_factory=list)


def local_day_bounds(day: Date, timezone: str = BUSINESS_TIMEZONE) -> tuple[pd.Timestamp, pd.Timestamp]:
    """UTC start and end of the local `day` (23, 24 or 25 hours)."""
    start = pd.Timestamp(day.isoformat()).tz_localize(timezone)
    end = pd.Timestamp((day + timedelta(days=1)).isoformat()).tz_localize(timezone)
    return start.tz_convert("UTC"), end.tz_convert("UTC")


def series_members(registry: pd.DataFrame, kinds: tuple[str, ...]) -> list[SeriesMembers]:
    """Every series of `kinds` with at least one registered meter, from the registry rows."""
    missing = {"meter_id", "city", *REGISTRY_COLUMN.values()} - set(registry.columns)
    if missing:
        raise ValueError(f"meter registry: columns {sorted(missing)} missing (needed to build the forecast series)")
    found: list[SeriesMembers] = []
    for kind in kinds:
        if kind not in REGISTRY_COLUMN:
            raise ValueError(f"forecast series kind {kind!r} is not one of {sorted(REGISTRY_COLUMN)}")
        column = REGISTRY_COLUMN[kind]
        for name, rows in registry.dropna(subset=[column]).groupby(column, sort=True):
            cities = tuple(sorted(str(c) for c in rows["city"].dropna().unique()))
            found.append(SeriesMembers(kind, str(name), frozenset(rows["meter_id"].astype(str)), cities))
    return found


def series_history(readings: pd.DataFrame, members: SeriesMembers, end: pd.Timestamp) -> pd.Series:
    """kWh per quarter-hour (index: interval start, UTC) summed over the series' meters, up to
    `end` (exclusive). `readings` has `meter_id`, `reading_ts` (interval end, UTC) and
    `consumption_kwh`. Quarter-hours no meter reported are left out, not filled with zero."""
    mine = readings[readings["meter_id"].isin(members.meter_ids)]
    start = pd.to_datetime(mine["reading_ts"], utc=True) - QUARTER_HOUR
    kwh = pd.Series(mine["consumption_kwh"].to_numpy(dtype=float), index=pd.DatetimeIndex(start, name="interval_start"))
    kwh = kwh[kwh.index < end]
    return kwh.groupby(level=0).sum().sort_index().rename("kwh")


def city_mean(frame: pd.DataFrame, cities: tuple[str, ...], time_column: str) -> pd.Series:
    """°C per clock hour (UTC) averaged over `cities`, one source per city and hour, DWD first
    (`metrify.contracts.weather.preferred_per_city_hour`)."""
    mine = frame.reset_index(drop=True)
    mine = mine[mine["city"].isin(cities)].dropna(subset=["temperature_celsius"])
    if mine.empty:
        return pd.Series(dtype=float, index=pd.DatetimeIndex([], tz="UTC"), name="temperature_celsius")
    best = preferred_per_city_hour(mine, time_column)
    return (
        best.groupby("hour")["temperature_celsius"].mean().sort_index().rename_axis(None).rename("temperature_celsius")
    )


def latest_forecast(forecasts: pd.DataFrame, issued_before: datetime) -> pd.DataFrame:
    """Per source and city, the rows of the latest forecast run issued before `issued_before`."""
    if forecasts.empty:
        return forecasts
    forecasts = forecasts.reset_index(drop=True)
    issued = pd.to_datetime(forecasts["issued_at"], utc=True)
    usable = forecasts.assign(_issued=issued)[(issued < pd.Timestamp(issued_before)).to_numpy()]
    if usable.empty:
        return usable.drop(columns="_issued")
    newest = usable.groupby(["source", "city"])["_issued"].transform("max")
    return usable[usable["_issued"] == newest].drop(columns="_issued")


def series_temperature(
    observations: pd.DataFrame,
    forecasts: pd.DataFrame,
    members: SeriesMembers,
    target_day: Date,
    issued_before: datetime,
) -> tuple[pd.Series, list[str]]:
    """Observed °C over the history and forecast °C over `target_day` for the series' cities,
    and notes on what is missing (a missing forecast makes the model fall back)."""
    day_start, day_end = local_day_bounds(target_day)
    notes: list[str] = []
    observed = city_mean(observations, members.cities, "observed_at") if not observations.empty else None
    if observed is None or observed.empty:
        notes.append(f"no weather observations for its cities {list(members.cities)}")
        observed = pd.Series(dtype=float, index=pd.DatetimeIndex([], tz="UTC"))
    observed = observed[observed.index < day_start]
    run = latest_forecast(forecasts, issued_before) if not forecasts.empty else forecasts
    ahead = city_mean(run, members.cities, "valid_at") if not run.empty else None
    if ahead is not None:
        ahead = ahead[(ahead.index >= day_start) & (ahead.index < day_end)]
    if ahead is None or ahead.empty:
        notes.append(
            f"no weather forecast issued before {pd.Timestamp(issued_before).isoformat()} "
            f"covers {target_day} for its cities {list(members.cities)}"
        )
        return observed.rename("temperature_celsius"), notes
    return pd.concat([observed, ahead]).sort_index().rename("temperature_celsius"), notes

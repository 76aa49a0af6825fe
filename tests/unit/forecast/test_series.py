"""Building the forecast series: registry mapping, quarter-hours of a DST day, the weather inputs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from metrify.forecast.series import (
    local_day_bounds,
    series_history,
    series_members,
    series_temperature,
)

REGISTRY = pd.DataFrame(
    {
        "meter_id": ["m1", "m2", "m3", "m4"],
        "city": ["Berlin", "Leipzig", "Dresden", "München"],
        "region": ["Berlin", "Sachsen", "Sachsen", "Bayern"],
        "grid_operator": ["50Hertz", "50Hertz", "50Hertz", "TenneT"],
    }
)


def _readings(meters: list[str], start: pd.Timestamp, end: pd.Timestamp, kwh: float = 0.25) -> pd.DataFrame:
    ends = pd.date_range(start + timedelta(minutes=15), end, freq="15min", tz="UTC")
    return pd.DataFrame([{"meter_id": m, "reading_ts": ts, "consumption_kwh": kwh} for m in meters for ts in ends])


def test_registry_maps_meters_to_regions_and_control_areas() -> None:
    found = {(s.kind, s.name): s for s in series_members(REGISTRY, ("region", "control_area"))}
    assert set(found) == {
        ("region", "Bayern"),
        ("region", "Berlin"),
        ("region", "Sachsen"),
        ("control_area", "50Hertz"),
        ("control_area", "TenneT"),
    }
    assert found[("region", "Sachsen")].meter_ids == {"m2", "m3"}
    assert found[("control_area", "50Hertz")].meter_ids == {"m1", "m2", "m3"}
    assert found[("control_area", "50Hertz")].cities == ("Berlin", "Dresden", "Leipzig")


def test_registry_without_a_grouping_column_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"grid_operator"):
        series_members(REGISTRY.drop(columns="grid_operator"), ("region",))


@pytest.mark.parametrize(
    ("day", "quarters"), [(date(2026, 3, 29), 92), (date(2026, 10, 25), 100), (date(2026, 11, 3), 96)]
)
def test_history_sums_meters_per_quarter_hour_over_a_dst_day(day: date, quarters: int) -> None:
    start, end = local_day_bounds(day)
    sachsen = next(s for s in series_members(REGISTRY, ("region",)) if s.name == "Sachsen")
    history = series_history(_readings(["m1", "m2", "m3"], start, end + timedelta(hours=2)), sachsen, end=end)
    assert len(history) == quarters
    assert history.index[0] == start, "a reading's timestamp is the interval's end: the series is keyed by its start"
    assert (history == 0.5).all(), "two Saxon meters of 0.25 kWh each; Berlin's meter is not Saxon"


def _forecast_rows(cities: list[str], source: str, issued: datetime, day: date, temp: float) -> pd.DataFrame:
    start, end = local_day_bounds(day)
    hours = pd.date_range(start, end, freq="1h", inclusive="left", tz="UTC")
    return pd.DataFrame(
        [
            {"city": c, "source": source, "issued_at": issued, "valid_at": h, "temperature_celsius": temp}
            for c in cities
            for h in hours
        ]
    )


def _observations(cities: list[str], day: date, temp: float) -> pd.DataFrame:
    start, _ = local_day_bounds(day)
    hours = pd.date_range(start - timedelta(days=3), start, freq="1h", inclusive="left", tz="UTC")
    return pd.DataFrame(
        [{"city": c, "source": "dwd", "observed_at": h, "temperature_celsius": temp} for c in cities for h in hours]
    )


def test_temperature_prefers_dwd_and_the_latest_run_issued_before_the_forecast() -> None:
    day = date(2026, 11, 27)
    sachsen = next(s for s in series_members(REGISTRY, ("region",)) if s.name == "Sachsen")
    run_at = datetime(2026, 11, 26, 3, 30, tzinfo=UTC)
    forecasts = pd.concat(
        [
            _forecast_rows(["Leipzig", "Dresden"], "dwd", run_at - timedelta(hours=6), day, 1.0),
            _forecast_rows(["Leipzig", "Dresden"], "dwd", run_at - timedelta(hours=3), day, 2.0),  # latest
            _forecast_rows(["Leipzig", "Dresden"], "dwd", run_at + timedelta(hours=1), day, 9.0),  # after the run
            _forecast_rows(["Leipzig", "Dresden"], "openweathermap", run_at - timedelta(hours=1), day, 5.0),
            _forecast_rows(["München"], "dwd", run_at - timedelta(hours=1), day, -4.0),  # not Saxon
        ]
    )
    temperature, notes = series_temperature(_observations(["Leipzig"], day, 7.0), forecasts, sachsen, day, run_at)
    start, end = local_day_bounds(day)
    ahead = temperature[temperature.index >= start]
    assert notes == []
    assert len(ahead) == 24 and (ahead == 2.0).all()
    assert (temperature[temperature.index < start] == 7.0).all()


def test_observed_temperature_takes_one_source_per_city_and_clock_hour() -> None:
    """OpenWeatherMap's current weather is stamped when observed (10:37): it stands for the hour
    10:00 and counts only where DWD has no value for that city and hour."""
    day = date(2026, 11, 27)
    sachsen = next(s for s in series_members(REGISTRY, ("region",)) if s.name == "Sachsen")
    run_at = datetime(2026, 11, 26, 3, 30, tzinfo=UTC)
    dwd = _observations(["Leipzig", "Dresden"], day, 2.0)
    owm = _observations(["Leipzig", "Dresden"], day, 8.0)
    owm = owm.assign(source="openweathermap", observed_at=owm["observed_at"] + timedelta(minutes=37))
    no_dwd_in_dresden = (dwd["city"] == "Dresden") & (dwd["observed_at"] == dwd["observed_at"].max())
    forecasts = _forecast_rows(["Leipzig", "Dresden"], "dwd", run_at - timedelta(hours=1), day, 1.0)

    temperature, _ = series_temperature(pd.concat([owm, dwd[~no_dwd_in_dresden]]), forecasts, sachsen, day, run_at)
    observed = temperature[temperature.index < local_day_bounds(day)[0]]
    assert (observed.index == observed.index.floor("h")).all() and observed.index.is_unique
    assert len(observed) == 72  # 3 days of hours
    assert (observed.iloc[:-1] == 2.0).all()
    assert observed.iloc[-1] == (2.0 + 8.0) / 2  # Leipzig from DWD, Dresden from OpenWeatherMap


def test_missing_weather_forecast_is_named_as_the_fallback_reason() -> None:
    day = date(2026, 11, 27)
    bayern = next(s for s in series_members(REGISTRY, ("region",)) if s.name == "Bayern")
    run_at = datetime(2026, 11, 26, 3, 30, tzinfo=UTC)
    forecasts = _forecast_rows(["Leipzig"], "dwd", run_at - timedelta(hours=1), day, 1.0)
    temperature, notes = series_temperature(_observations(["München"], day, 3.0), forecasts, bayern, day, run_at)
    assert len(notes) == 1 and "no weather forecast" in notes[0] and "München" in notes[0]
    assert (temperature.index < local_day_bounds(day)[0]).all()


def test_erasure_finds_no_meter_in_a_forecast_file() -> None:
    """Forecasts are aggregates: the erasure scan passes over the `forecast/` layer's files."""
    from metrify.contracts.forecast import LOAD_FORECAST_SCHEMA
    from metrify.privacy.erasure import meter_rows

    assert meter_rows(LOAD_FORECAST_SCHEMA.empty_table(), "m1") is None

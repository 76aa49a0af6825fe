"""Bright Sky and OpenWeatherMap adapters on real-format fixtures; the energy demand factor."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from metrify.contracts.geography import largest_cities
from metrify.sources import PayloadError, brightsky, openweathermap
from metrify.sources.weather import configured_cities, energy_demand_factor
from tests.fake_apis import fixture


def test_brightsky_si_units_are_converted_to_the_contract() -> None:
    first, second = brightsky.parse_weather(fixture("weather/brightsky_weather_si_units.json"), units="si")
    assert first["observed_at"] == datetime(2026, 11, 22, 10, tzinfo=UTC)
    assert first["temperature_celsius"] == pytest.approx(3.3)
    assert first["pressure_hpa"] == pytest.approx(1013.3)
    assert first["wind_speed_ms"] == 7.4 and first["wind_direction_degrees"] == 250
    assert first["humidity_percent"] == 85 and first["cloud_cover_percent"] == 100
    assert first["visibility_km"] == 12.0
    assert first["station"] == "Berlin-Tempelhof (DWD 00433)"
    assert second["temperature_celsius"] is None, "documented nullable fields stay null"


def test_brightsky_documented_example_in_dwd_units() -> None:
    (record,) = brightsky.parse_weather(fixture("weather/brightsky_weather_dwd_units.json"), units="dwd")
    assert record["observed_at"] == datetime(2023, 8, 7, 12, tzinfo=UTC), "+02:00 offset to UTC"
    assert record["temperature_celsius"] == 17.6 and record["pressure_hpa"] == 1013.3
    assert record["wind_speed_ms"] == pytest.approx(33.8 / 3.6, abs=0.01), "km/h to m/s"
    assert record["visibility_km"] == 50.8


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"<html>502 Bad Gateway</html>", "not JSON"),
        (b'{"title": "x"}', "'weather' list"),
        (
            fixture("weather/brightsky_weather_si_units.json").replace(b'"temperature"', b'"temp"'),
            "lacks field 'temperature'",
        ),
        (
            fixture("weather/brightsky_weather_si_units.json").replace(b'"wind_speed":7.4', b'"wind_speed":"7.4"'),
            "expected a number",
        ),
    ],
)
def test_brightsky_malformed_or_drifted(raw: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        brightsky.parse_weather(raw)


def test_owm_current_weather_metric() -> None:
    record = openweathermap.parse_current(fixture("weather/owm_current_metric.json"))
    assert record["observed_at"] == datetime(2026, 11, 22, 10, tzinfo=UTC)
    assert record["temperature_celsius"] == 3.3 and record["humidity_percent"] == 85
    assert record["pressure_hpa"] == 1013 and record["wind_speed_ms"] == 5.14
    assert record["wind_direction_degrees"] == 250 and record["cloud_cover_percent"] == 100
    assert record["visibility_km"] == 10.0 and record["station"] == "OWM Berlin"


def test_owm_timemachine_matches_current_fields() -> None:
    current = openweathermap.parse_current(fixture("weather/owm_current_metric.json"))
    history = openweathermap.parse_timemachine(fixture("weather/owm_timemachine_metric.json"))
    keys = [k for k in current if k != "station"]
    assert {k: history[k] for k in keys} == {k: current[k] for k in keys}


@pytest.mark.parametrize("name", ["weather/owm_error_401.json", "weather/owm_error_404_string_cod.json"])
def test_owm_error_bodies_with_numeric_or_string_cod(name: str) -> None:
    with pytest.raises(PayloadError, match="error body with cod"):
        openweathermap.parse_current(fixture(name))


def test_owm_schema_drift() -> None:
    drifted = fixture("weather/owm_current_metric.json").replace(b'"temp":3.3', b'"temp":"3.3"')
    with pytest.raises(PayloadError, match="main.temp is str"):
        openweathermap.parse_current(drifted)
    with pytest.raises(PayloadError, match="missing field main.humidity"):
        openweathermap.parse_current(drifted.replace(b'"temp":"3.3"', b'"temp":3.3').replace(b'"humidity":85,', b""))


def test_energy_demand_factor_formula() -> None:
    # mild, calm, half-cloudy: neutral
    assert energy_demand_factor(15.0, 3.0, 50.0) == 1.0
    # 5 °C, 9 m/s, overcast: heating 0.25 + wind 0.02 + light 0.05
    assert energy_demand_factor(5.0, 9.0, 100.0) == pytest.approx(1.32)
    # 30 °C, clear: cooling 0.18, light -0.05, no wind chill when warm
    assert energy_demand_factor(30.0, 9.0, 0.0) == pytest.approx(1.13)
    # missing inputs are neutral
    assert energy_demand_factor(np.nan, np.nan, np.nan) == 1.0


def test_configured_cities() -> None:
    everything = configured_cities("")
    assert {c.name for c in largest_cities(10)} <= {c.name for c in everything}
    assert [c.name for c in configured_cities("largest:3")] == ["Berlin", "Hamburg", "München"]
    assert [c.name for c in configured_cities("Köln, Kiel")] == ["Köln", "Kiel"]
    with pytest.raises(ValueError, match="unknown cities"):
        configured_cities("Atlantis")

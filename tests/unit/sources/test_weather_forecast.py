"""Weather forecasts: parsers on real-format fixtures, the run schedule, landing from the fakes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from metrify import lake
from metrify.contracts.forecast import WEATHER_FORECAST_DATASET, WEATHER_FORECAST_SCHEMA
from metrify.contracts.geography import CITY_BY_NAME
from metrify.sources import PayloadError, brightsky, openweathermap, weather_forecast
from metrify.sources.grid import SourceFailed
from metrify_dev.fakes import models
from metrify_dev.simulator import forecast_weather
from tests.fake_apis import NOW, endpoint, fixture

CITIES = [CITY_BY_NAME[n] for n in ("Berlin", "München", "Köln")]
CONN = {"dwd": "brightsky_api", "openweathermap": "openweathermap_api"}


def test_brightsky_forecast_keeps_only_the_mosmix_records_in_contract_units() -> None:
    first, second = brightsky.parse_forecast(fixture("weather/brightsky_forecast_mosmix_si.json"), units="si")
    assert first["valid_at"] == datetime(2026, 11, 26, 17, tzinfo=UTC), "the `current` record is no forecast"
    assert first["temperature_celsius"] == pytest.approx(4.7)
    assert first["wind_speed_ms"] == 2.9 and first["cloud_cover_percent"] == 90
    assert second["humidity_percent"] is None, "nullable fields stay null"


def test_brightsky_forecast_with_an_unknown_source_is_refused() -> None:
    raw = fixture("weather/brightsky_forecast_mosmix_si.json").replace(b'"id": 238685', b'"id": 1')
    with pytest.raises(PayloadError, match="unknown source_id 238685"):
        brightsky.parse_forecast(raw)


def test_owm_forecast_metric() -> None:
    first, second = openweathermap.parse_forecast(fixture("weather/owm_forecast_metric.json"))
    assert first == {
        "valid_at": datetime(2026, 11, 26, 21, tzinfo=UTC),
        "temperature_celsius": 5.2,
        "humidity_percent": 84,
        "wind_speed_ms": 3.1,
        "cloud_cover_percent": 90,
    }
    assert second["valid_at"] - first["valid_at"] == timedelta(hours=3)


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (b'"temp": 5.2', b'"temperature": 5.2', r"missing field list\[0\]\.main\.temp"),
        (b'"humidity": 88', b'"humidity": "88"', r"list\[1\]\.main\.humidity is str"),
        (b'"list"', b'"items"', "missing 'list'"),
    ],
)
def test_owm_forecast_drift_is_named(old: bytes, new: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        openweathermap.parse_forecast(fixture("weather/owm_forecast_metric.json").replace(old, new))


@pytest.mark.parametrize(
    ("as_of", "issued"),
    [
        ("2026-11-26T05:00:00Z", "2026-11-26T03:00:00Z"),
        ("2026-11-26T04:59:00Z", "2026-11-25T21:00:00Z"),
        ("2026-11-26T16:59:00Z", "2026-11-26T09:00:00Z"),
        ("2026-11-26T23:30:00Z", "2026-11-26T21:00:00Z"),
    ],
)
def test_latest_run_is_the_newest_mosmix_run_out_two_hours_later(as_of: str, issued: str) -> None:
    assert weather_forecast.latest_run(pd.Timestamp(as_of).to_pydatetime()) == pd.Timestamp(issued)


def _raw(root, source: str) -> pd.DataFrame:
    table = lake.read_table(root / "raw" / WEATHER_FORECAST_DATASET / f"source={source}")
    return pd.DataFrame() if table is None else table.to_pandas()


@pytest.mark.parametrize("source", ["dwd", "openweathermap"])
def test_fakes_serve_the_simulators_forecast_and_it_lands_per_run(clean_fakes, lake_root, source: str) -> None:
    summary = weather_forecast.ingest_forecast(source, NOW, endpoint(clean_fakes, CONN[source]), lake_root, CITIES)
    issued = weather_forecast.latest_run(NOW)
    frame = _raw(lake_root, source)
    assert summary["rows"] == len(frame) > 0 and set(frame["city"]) == {c.name for c in CITIES}
    assert set(frame["issued_at"]) == {pd.Timestamp(issued)}
    files = lake.list_files(lake_root / "raw" / WEATHER_FORECAST_DATASET / f"source={source}")
    assert [f.rsplit("/", 3)[-3:] for f in files] == [
        [f"date={issued:%Y-%m-%d}", f"hour={issued:%H}", f"{issued:%Y%m%dT%H%M}.parquet"]
    ]
    tomorrow = pd.Timestamp(NOW).tz_convert("Europe/Berlin").normalize() + pd.Timedelta(days=1)
    assert frame["valid_at"].min() <= tomorrow and frame["valid_at"].max() >= tomorrow + pd.Timedelta(days=1)
    assert (frame["valid_at"] > pd.Timestamp(NOW)).all(), "only hours still ahead are forecasts"
    for city in CITIES:
        rows = frame[frame["city"] == city.name].sort_values("valid_at")
        run = pd.date_range(issued, periods=models.FORECAST_RUN_HOURS, freq="h")
        truth = forecast_weather(run, city.lat, 42, issued).reindex(pd.DatetimeIndex(rows["valid_at"]))
        for column in ("temperature_celsius", "humidity_percent", "wind_speed_ms", "cloud_cover_percent"):
            assert rows[column].to_numpy() == pytest.approx(truth[column].to_numpy(), abs=0.011), (city, column)
        assert (rows["lead_hours"].to_numpy() == truth["lead_hours"].to_numpy()).all()
    assert set(WEATHER_FORECAST_SCHEMA.names) <= set(frame.columns)


@pytest.mark.parametrize("source", ["dwd", "openweathermap"])
def test_malformed_city_is_quarantined_others_land_and_a_repoll_overwrites(clean_fakes, lake_root, source) -> None:
    ep = endpoint(clean_fakes, CONN[source])
    weather_forecast.ingest_forecast(source, NOW, ep, lake_root, CITIES)
    first = _raw(lake_root, source)
    server = clean_fakes["brightsky" if source == "dwd" else "openweathermap"]
    server.inject("malformed", times=None, match=f"lat={CITY_BY_NAME['München'].lat:.4f}")
    with pytest.raises(SourceFailed) as failed:
        weather_forecast.ingest_forecast(source, NOW, ep, lake_root, CITIES)
    message = str(failed.value)
    assert f"{source} forecast issued" in message and "1 of 3 cities failed" in message
    assert "München" in message and "quarantined at" in message and f"connection '{CONN[source]}'" in message
    quarantined = lake.read_table(lake_root / "quarantine" / WEATHER_FORECAST_DATASET).to_pandas()
    assert list(quarantined["subject"]) == ["München"] and quarantined["reason"].str.contains("temp").all()
    again = _raw(lake_root, source)
    assert len(again) == len(first), "the re-poll replaced the run's file and kept München's earlier rows"
    assert set(again["city"]) == {c.name for c in CITIES}


def test_observations_leave_the_mosmix_forecast_records_out() -> None:
    (record,) = brightsky.parse_weather(fixture("weather/brightsky_forecast_mosmix_si.json"), units="si")
    assert record["observed_at"] == datetime(2026, 11, 26, 16, tzinfo=UTC) and "Tempelhof" in record["station"]

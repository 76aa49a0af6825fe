"""DWD observations through the Bright Sky JSON API (no key).

Documentation followed: Bright Sky's OpenAPI specification (https://brightsky.dev/docs/,
`brightsky.yml` v2.1): `GET /weather?lat=&lon=&date=&last_date=&units=` returns
`{"weather": [WeatherRecord...], "sources": [Source...]}`; a WeatherRecord has `timestamp`
(ISO 8601), `source_id`, `temperature`, `relative_humidity`, `pressure_msl`, `wind_speed`,
`wind_direction`, `cloud_cover`, `visibility`, ... (each nullable). With `units=si` temperature
is K, pressure Pa, wind m/s, visibility m, cloud cover and humidity %; with the default
`units=dwd` temperature is °C, pressure hPa, wind km/h. Errors are `{"title", "description"}`,
404 "No sources match your criteria" when no DWD station is near. A range costs one request per
city, whatever its length.

An hour DWD has not published yet is simply absent: `weather` is empty or lacks that timestamp.
DWD updates its current-weather reports (`weather_reports/poi`, one observation per station and
hour) hourly, and Bright Sky checks DWD's server for new files every minute. `PUBLICATION_DELAY`
allows one hour for DWD's hourly update plus one hour of margin; after it, a missing hour is a
failure.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from metrify.sources import NoDataError, PayloadError
from metrify.sources.http import ClientError, HttpClient, describe

SOURCE = "dwd"
#: `sources[].observation_type` of MOSMIX forecasts (the others: historical, current, synop).
FORECAST_TYPE = "forecast"
WEATHER_PATH = "/weather"
#: How long after an hour ends Bright Sky may still lack DWD's observation for it.
PUBLICATION_DELAY = timedelta(hours=2)
FIELDS = (
    "temperature",
    "relative_humidity",
    "pressure_msl",
    "wind_speed",
    "wind_direction",
    "cloud_cover",
    "visibility",
)


def _number(record: dict[str, Any], name: str, raw: bytes | str) -> float | None:
    if name not in record:
        raise PayloadError(SOURCE, f"weather record lacks field {name!r} (schema drift?)", raw)
    value = record[name]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PayloadError(SOURCE, f"field {name!r} is {type(value).__name__} {value!r}, expected a number", raw)
    return float(value)


def parse_weather(raw: bytes | str, units: str = "si", forecasts: bool = False) -> list[dict[str, Any]]:
    """Bright Sky `/weather` JSON -> records in contract units (°C, %, hPa, m/s, °, %, km).

    Records of `forecast` sources (MOSMIX, answered for hours not observed yet) are left out
    unless `forecasts` is set."""
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(SOURCE, f"response is not JSON ({exc})", raw) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("weather"), list):
        raise PayloadError(SOURCE, "expected an object with a 'weather' list", raw)
    stations = {s.get("id"): s for s in payload.get("sources") or [] if isinstance(s, dict)}
    records = []
    for record in payload["weather"]:
        if not isinstance(record, dict) or "timestamp" not in record:
            raise PayloadError(SOURCE, "weather record without 'timestamp'", raw)
        try:
            observed = pd.Timestamp(record["timestamp"])
        except (TypeError, ValueError):
            raise PayloadError(SOURCE, f"timestamp {record['timestamp']!r} is not ISO 8601", raw) from None
        if observed.tzinfo is None:
            raise PayloadError(SOURCE, f"timestamp {record['timestamp']!r} has no UTC offset", raw)
        v = {name: _number(record, name, raw) for name in FIELDS}
        temp, pressure, wind = v["temperature"], v["pressure_msl"], v["wind_speed"]
        if units == "si":
            temp = None if temp is None else temp - 273.15
            pressure = None if pressure is None else pressure / 100
        else:  # dwd units
            wind = None if wind is None else wind / 3.6
        station = stations.get(record.get("source_id"), {})
        if not forecasts and station.get("observation_type") == FORECAST_TYPE:
            continue  # a MOSMIX forecast for an hour not observed yet: no observation
        records.append(
            {
                "observed_at": observed.tz_convert("UTC").to_pydatetime(),
                "temperature_celsius": None if temp is None else round(temp, 2),
                "humidity_percent": v["relative_humidity"],
                "pressure_hpa": None if pressure is None else round(pressure, 2),
                "wind_speed_ms": None if wind is None else round(wind, 2),
                "wind_direction_degrees": v["wind_direction"],
                "cloud_cover_percent": v["cloud_cover"],
                "visibility_km": None if v["visibility"] is None else round(v["visibility"] / 1000, 3),
                "station": f"{station.get('station_name') or ''} (DWD {station.get('dwd_station_id') or '?'})".strip(),
            }
        )
    return records


def fetch_hourly(
    client: HttpClient, lat: float, lon: float, start: datetime, end: datetime, units: str = "si"
) -> list[dict[str, Any]]:
    """Hourly records with timestamps in [start, end) for the DWD station nearest to lat/lon."""
    records = _get_weather(client, lat, lon, start, end, units, parse_weather)
    lo, hi = pd.Timestamp(start), pd.Timestamp(end)
    return [r for r in records if lo <= pd.Timestamp(r["observed_at"]) < hi]


def _get_weather(
    client: HttpClient,
    lat: float,
    lon: float,
    start: datetime,
    end: datetime,
    units: str,
    parse: Callable[[bytes, str], list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """GET `/weather` for the hours in [start, end) near lat/lon and parse the answer with `parse`."""
    last = end - timedelta(hours=1)
    params = {
        "lat": f"{lat:.4f}",
        "lon": f"{lon:.4f}",
        "date": start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        "last_date": max(start, last).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        "units": units,
        "tz": "Etc/UTC",
    }
    try:
        response = client.get(WEATHER_PATH, params=params)
    except ClientError as exc:
        if exc.status == 404:
            raise NoDataError(f"Bright Sky has no DWD source near {lat},{lon}: {exc.body}") from None
        raise
    try:
        return parse(response.content, units)
    except PayloadError as exc:
        exc.request = describe(client.endpoint, WEATHER_PATH, params)
        raise


# --- forecasts (DWD MOSMIX) ---------------------------------------------------------------------
#
# Bright Sky serves DWD's MOSMIX forecasts through the same `/weather` endpoint for future
# timestamps: the records come from sources with `observation_type: "forecast"` (MOSMIX stations,
# keyed by their WMO id), hourly, up to 10 days ahead. Records of other sources in the same
# answer (`current`, `synop`, `historical`: the hours already observed) are not forecasts and are
# left out. The answer does not say which MOSMIX run the values come from: the caller attributes
# them to the newest run available at poll time (`metrify.sources.weather_forecast.latest_run`).


def parse_forecast(raw: bytes | str, units: str = "si") -> list[dict[str, Any]]:
    """Bright Sky `/weather` JSON -> the records of its `forecast` sources (MOSMIX), in contract units."""
    records = parse_weather(raw, units, forecasts=True)
    payload = json.loads(raw)
    types = {s.get("id"): s.get("observation_type") for s in payload.get("sources") or [] if isinstance(s, dict)}
    out = []
    for record, item in zip(records, payload["weather"], strict=True):
        source_id = item.get("source_id")
        if source_id not in types:
            raise PayloadError(
                SOURCE, f"weather record at {item.get('timestamp')} names unknown source_id {source_id!r}", raw
            )
        if types[source_id] == FORECAST_TYPE:
            out.append({**record, "valid_at": record.pop("observed_at")})
    return out


def fetch_forecast(
    client: HttpClient, lat: float, lon: float, start: datetime, end: datetime, units: str = "si"
) -> list[dict[str, Any]]:
    """MOSMIX forecast records valid in [start, end) for the MOSMIX station nearest to lat/lon."""
    records = _get_weather(client, lat, lon, start, end, units, parse_forecast)
    lo, hi = pd.Timestamp(start), pd.Timestamp(end)
    return [r for r in records if lo <= pd.Timestamp(r["valid_at"]) < hi]

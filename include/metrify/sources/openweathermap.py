"""OpenWeatherMap: current weather (`/data/2.5/weather`) and, for past hours, One Call 3.0's
`/data/3.0/onecall/timemachine`.

Documentation followed: https://openweathermap.org/current and
https://openweathermap.org/api/one-call-3#history. The key is the `appid` query parameter (the
Airflow connection's password). Without `units` temperatures are Kelvin; we send
`units=metric` (°C, m/s; pressure is always hPa, visibility m, clouds and humidity %).

* current: `{"coord", "weather": [...], "main": {"temp", "pressure", "humidity", ...},
  "visibility", "wind": {"speed", "deg"}, "clouds": {"all"}, "dt", "name", "cod": 200}`
* timemachine: `{"lat", "lon", "timezone", "data": [{"dt", "temp", "pressure", "humidity",
  "clouds", "visibility", "wind_speed", "wind_deg", ...}]}`
* errors: `{"cod": 401, "message": "Invalid API key. ..."}`; `cod` is sometimes a string
  (`{"cod": "404", "message": "city not found"}`), so it is compared as text.

The current-weather API cannot be asked about the past; a backfill of an old interval uses the
timemachine endpoint when the connection's extra says `"history": "timemachine"` (a separate
"One Call by Call" subscription), and is skipped with a clear message otherwise. A timemachine
answer with an empty `data` list has no observation for that time (`NoDataError`). Both
endpoints answer about a time as soon as it has passed: `PUBLICATION_DELAY` is zero, and a
scheduled run polls only its own hour (a re-poll would cost one timemachine call per city-hour).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from metrify.sources import NoDataError, PayloadError
from metrify.sources.http import ClientError, HttpClient, describe

SOURCE = "openweathermap"
CURRENT_PATH = "/data/2.5/weather"
TIMEMACHINE_PATH = "/data/3.0/onecall/timemachine"
#: OpenWeatherMap answers about an hour as soon as it has passed.
PUBLICATION_DELAY = timedelta(0)


def _load(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(SOURCE, f"response is not JSON ({exc})", raw) from None


def _num(container: Any, key: str, where: str, raw: bytes | str, required: bool = True) -> float | None:
    if not isinstance(container, dict) or key not in container:
        if required:
            raise PayloadError(SOURCE, f"missing field {where}{key} (schema drift?)", raw)
        return None
    value = container[key]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PayloadError(SOURCE, f"field {where}{key} is {type(value).__name__} {value!r}, expected a number", raw)
    return float(value)


def _check_cod(payload: Any, raw: bytes | str) -> None:
    if isinstance(payload, dict) and "cod" in payload and str(payload["cod"]) != "200":
        raise PayloadError(SOURCE, f"error body with cod {payload['cod']!r}: {payload.get('message')}", raw)


def _record(
    observed_unix: float | None, temp, humidity, pressure, wind, deg, clouds, visibility, station: str
) -> dict[str, Any]:
    return {
        "observed_at": datetime.fromtimestamp(observed_unix, UTC) if observed_unix is not None else None,
        "temperature_celsius": temp,
        "humidity_percent": humidity,
        "pressure_hpa": pressure,
        "wind_speed_ms": wind,
        "wind_direction_degrees": deg,
        "cloud_cover_percent": clouds,
        "visibility_km": None if visibility is None else round(visibility / 1000, 3),
        "station": station,
    }


def parse_current(raw: bytes | str) -> dict[str, Any]:
    """`/data/2.5/weather` (units=metric) -> one record in contract units."""
    p = _load(raw)
    if not isinstance(p, dict):
        raise PayloadError(SOURCE, "expected a JSON object", raw)
    _check_cod(p, raw)
    main, wind, clouds = p.get("main"), p.get("wind"), p.get("clouds")
    dt = _num(p, "dt", "", raw)
    return _record(
        dt,
        _num(main, "temp", "main.", raw),
        _num(main, "humidity", "main.", raw),
        _num(main, "pressure", "main.", raw),
        _num(wind, "speed", "wind.", raw),
        _num(wind, "deg", "wind.", raw, required=False),
        _num(clouds, "all", "clouds.", raw),
        _num(p, "visibility", "", raw, required=False),
        f"OWM {p.get('name') or p.get('id') or ''}".strip(),
    )


def parse_timemachine(raw: bytes | str) -> dict[str, Any]:
    """`/data/3.0/onecall/timemachine` (units=metric) -> the record of `data[0]`."""
    p = _load(raw)
    if not isinstance(p, dict):
        raise PayloadError(SOURCE, "expected a JSON object", raw)
    _check_cod(p, raw)
    data = p.get("data")
    if isinstance(data, list) and not data:
        raise NoDataError("OpenWeatherMap's timemachine answered an empty 'data' list")
    if not isinstance(data, list) or not isinstance(data[0], dict):
        raise PayloadError(SOURCE, "missing non-empty 'data' list (schema drift?)", raw)
    d = data[0]
    return _record(
        _num(d, "dt", "data[0].", raw),
        _num(d, "temp", "data[0].", raw),
        _num(d, "humidity", "data[0].", raw),
        _num(d, "pressure", "data[0].", raw),
        _num(d, "wind_speed", "data[0].", raw),
        _num(d, "wind_deg", "data[0].", raw, required=False),
        _num(d, "clouds", "data[0].", raw),
        _num(d, "visibility", "data[0].", raw, required=False),
        f"OWM {p.get('lat')},{p.get('lon')}",
    )


def _get(client: HttpClient, path: str, params: dict[str, Any]) -> bytes:
    full = {**params, "appid": client.endpoint.secret or "", "units": "metric"}
    try:
        return client.get(path, params=full).content
    except ClientError as exc:
        message = exc.body or ""
        try:
            body = json.loads(exc.body or "")
            if isinstance(body, dict):
                message = f"cod {body.get('cod')!r}: {body.get('message')}"
        except ValueError:
            pass
        if exc.status == 404:
            raise NoDataError(
                f"OpenWeatherMap has no data for {describe(client.endpoint, path, full)}: {message}"
            ) from None
        raise ClientError(
            f"OpenWeatherMap rejected {describe(client.endpoint, path, full)} "
            f"(connection '{client.endpoint.conn_id}') with HTTP {exc.status}, {message}",
            conn_id=exc.conn_id,
            status=exc.status,
            body=exc.body,
        ) from None


def fetch_current(client: HttpClient, lat: float, lon: float) -> dict[str, Any]:
    params = {"lat": f"{lat:.4f}", "lon": f"{lon:.4f}"}
    raw = _get(client, CURRENT_PATH, params)
    try:
        return parse_current(raw)
    except PayloadError as exc:
        exc.request = describe(client.endpoint, CURRENT_PATH, {**params, "appid": "", "units": "metric"})
        raise


def fetch_at(client: HttpClient, lat: float, lon: float, when: datetime) -> dict[str, Any]:
    params = {"lat": f"{lat:.4f}", "lon": f"{lon:.4f}", "dt": str(int(when.timestamp()))}
    raw = _get(client, TIMEMACHINE_PATH, params)
    try:
        return parse_timemachine(raw)
    except PayloadError as exc:
        exc.request = describe(client.endpoint, TIMEMACHINE_PATH, {**params, "appid": "", "units": "metric"})
        raise


# --- forecasts (`/data/2.5/forecast`, 5 day / 3 hour) -------------------------------------------
#
# https://openweathermap.org/forecast5: `{"cod": "200", "message": 0, "cnt": 40, "list": [{"dt",
# "main": {"temp", "feels_like", "temp_min", "temp_max", "pressure", "sea_level", "grnd_level",
# "humidity", "temp_kf"}, "weather": [...], "clouds": {"all"}, "wind": {"speed", "deg", "gust"},
# "visibility", "pop", "sys": {"pod"}, "dt_txt"}, ...], "city": {"id", "name", "coord", "country",
# "population", "timezone", "sunrise", "sunset"}}`: 40 steps of 3 h from the next step on. The
# answer does not say when the forecast was computed; the caller attributes it to the newest run
# available at poll time, like DWD's.

FORECAST_PATH = "/data/2.5/forecast"


def parse_forecast(raw: bytes | str) -> list[dict[str, Any]]:
    """`/data/2.5/forecast` (units=metric) -> one record per `list` entry, in contract units."""
    p = _load(raw)
    if not isinstance(p, dict):
        raise PayloadError(SOURCE, "expected a JSON object", raw)
    _check_cod(p, raw)
    steps = p.get("list")
    if not isinstance(steps, list):
        raise PayloadError(SOURCE, "missing 'list' of forecast steps (schema drift?)", raw)
    records = []
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            raise PayloadError(SOURCE, f"list[{i}] is not an object", raw)
        where = f"list[{i}]."
        dt = _num(step, "dt", where, raw)
        main, wind, clouds = step.get("main"), step.get("wind"), step.get("clouds")
        records.append(
            {
                "valid_at": datetime.fromtimestamp(dt, UTC) if dt is not None else None,
                "temperature_celsius": _num(main, "temp", where + "main.", raw),
                "humidity_percent": _num(main, "humidity", where + "main.", raw),
                "wind_speed_ms": _num(wind, "speed", where + "wind.", raw),
                "cloud_cover_percent": _num(clouds, "all", where + "clouds.", raw),
            }
        )
        if records[-1]["valid_at"] is None:
            raise PayloadError(SOURCE, f"{where}dt is null", raw)
    return records


def fetch_forecast(client: HttpClient, lat: float, lon: float) -> list[dict[str, Any]]:
    """The current 5 day / 3 hour forecast for lat/lon."""
    params = {"lat": f"{lat:.4f}", "lon": f"{lon:.4f}"}
    raw = _get(client, FORECAST_PATH, params)
    try:
        return parse_forecast(raw)
    except PayloadError as exc:
        exc.request = describe(client.endpoint, FORECAST_PATH, {**params, "appid": "", "units": "metric"})
        raise

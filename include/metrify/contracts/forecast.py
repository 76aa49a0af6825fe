"""The forecast contracts: weather forecasts polled from the APIs, and the day-ahead load forecast.

`weather_forecast`: one row per city, source, issue time and forecast hour, landed under
`raw/weather_forecast/source=<dwd|openweathermap>/date=<issue date>/...` (DWD's MOSMIX through
Bright Sky, OpenWeatherMap's forecast endpoint).

`load_forecast`: one row per series (a federal state or a control area), quarter-hour of the
forecast local day and model run, landed under `forecast/load_forecast/date=<target date>/`.
A series' load is the summed consumption (kWh per quarter-hour) of the meters registered in it.
"""

from __future__ import annotations

import pyarrow as pa

WEATHER_FORECAST_DATASET = "weather_forecast"
WEATHER_FORECAST_SCHEMA = pa.schema(
    [
        ("city", pa.string()),
        ("region", pa.string()),
        ("grid_operator", pa.string()),
        ("source", pa.string()),
        ("issued_at", pa.timestamp("us", tz="UTC")),  # when the provider issued the forecast run
        ("valid_at", pa.timestamp("us", tz="UTC")),  # the hour the values are forecast for
        ("lead_hours", pa.int32()),
        ("temperature_celsius", pa.float64()),
        ("humidity_percent", pa.float64()),
        ("wind_speed_ms", pa.float64()),
        ("cloud_cover_percent", pa.float64()),
        ("ingested_at", pa.timestamp("us", tz="UTC")),
    ]
)
WEATHER_FORECAST_KEY = ("city", "source", "issued_at", "valid_at")

LOAD_FORECAST_LAYER = "forecast"
LOAD_FORECAST_DATASET = "load_forecast"
#: What a series aggregates: a federal state (`region` in the registry) or a control area (`grid_operator`).
SERIES_KINDS = ("region", "control_area")
QUANTILES = (0.1, 0.5, 0.9)
#: How a forecast was made: the trained model, or the fallback (same weekday last week, scaled).
METHODS = ("model", "fallback_last_week")
LOAD_FORECAST_SCHEMA = pa.schema(
    [
        ("series_kind", pa.string()),
        ("series", pa.string()),
        ("target_date", pa.date32()),  # the Europe/Berlin day forecast
        ("interval_start", pa.timestamp("us", tz="UTC")),  # quarter-hour start
        ("p10_kwh", pa.float64()),
        ("p50_kwh", pa.float64()),
        ("p90_kwh", pa.float64()),
        ("method", pa.string()),
        ("model_version", pa.string()),
        ("meters", pa.int32()),  # meters in the series when the forecast was made
        ("issued_at", pa.timestamp("us", tz="UTC")),
    ]
)
LOAD_FORECAST_KEY = ("series_kind", "series", "interval_start")
#: `raw.<table>` the warehouse loads the landed forecasts into (one interval per target date)
LOAD_FORECAST_WAREHOUSE_TABLE = "load_forecast"

"""The `weather` contract: one row per city, source and observed hour.

How each field is derived from DWD (Bright Sky) and OpenWeatherMap: `metrify.sources.weather`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    import pandas as pd

DATASET = "weather"
SOURCES = ("dwd", "openweathermap")
WEATHER_SCHEMA = pa.schema(
    [
        ("city", pa.string()),
        ("region", pa.string()),
        ("grid_operator", pa.string()),
        ("latitude", pa.float64()),
        ("longitude", pa.float64()),
        ("source", pa.string()),
        ("station", pa.string()),
        ("observed_at", pa.timestamp("us", tz="UTC")),
        ("temperature_celsius", pa.float64()),
        ("humidity_percent", pa.float64()),
        ("pressure_hpa", pa.float64()),
        ("wind_speed_ms", pa.float64()),
        ("wind_direction_degrees", pa.float64()),
        ("cloud_cover_percent", pa.float64()),
        ("visibility_km", pa.float64()),
        ("energy_demand_factor", pa.float64()),
        ("ingested_at", pa.timestamp("us", tz="UTC")),
    ]
)
# The columns DESIGN.md names (what the gate checks and the warehouse loads).
CONTRACT_COLUMNS = (
    "city",
    "source",
    "observed_at",
    "temperature_celsius",
    "humidity_percent",
    "pressure_hpa",
    "wind_speed_ms",
    "wind_direction_degrees",
    "cloud_cover_percent",
    "visibility_km",
    "energy_demand_factor",
    "ingested_at",
)
KEY = ("city", "source", "observed_at")
TIME_COLUMN = "observed_at"


def preferred_per_city_hour(frame: pd.DataFrame, time_column: str = TIME_COLUMN) -> pd.DataFrame:
    """One row per city and clock hour, with the hour (UTC) in a column `hour`: from the first
    source in `SOURCES` order with a temperature, the earliest row of that hour.

    A row stands for the hour it falls in (OpenWeatherMap's current weather observed at 10:37
    for 10:00-11:00), so two sources stamped at different minutes never both count.
    """
    import pandas as pd

    frame = frame.dropna(subset=["temperature_celsius"])
    rank = {source: i for i, source in enumerate(SOURCES)}
    frame = frame.assign(
        hour=pd.to_datetime(frame[time_column], utc=True).dt.floor("h"),
        _rank=frame["source"].map(rank).fillna(len(rank)),
    )
    ordered = frame.sort_values(["_rank", time_column], kind="stable")
    return ordered.drop_duplicates(["city", "hour"]).drop(columns="_rank")

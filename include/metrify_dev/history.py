"""History for `metrify run`: the days before the simulated window, written straight into the
validated layer, so the day-ahead load forecast has the weeks of history its model needs.

The run's Kafka window is one day; the forecast model needs 21 days (`metrify.forecast.model`).
Producing four weeks through Kafka, the drain and the gate would take many minutes, so the days
before the window are simulated for the same fleet (same meters and seed as the window, the
simulator's clean readings, no injected faults) and written as the quality gate would publish
them: `validated/meter_readings/date=/hour=/` and `validated/weather/date=/` (DWD observations
from the same weather model the fake APIs serve). They are marked as seeded in their file names
(`seeded_history.parquet`) and carry no Kafka offsets of the window's topic. Partitions follow
`reading_ts` as the drain's do, so the readings ending at the window's start land beside the
window's own first hour (a file of their own there).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from metrify import lake
from metrify.contracts import readings, weather
from metrify.contracts.geography import CITIES
from metrify_dev.simulator import SimulationOptions, ambient_weather, simulate

#: Days seeded before the window: four weeks, a week more than the model's minimum (21 days)
HISTORY_DAYS = 28
SEEDED_FILE = "seeded_history.parquet"
SEEDED_TOPIC = "seeded-history"  # not the meter topic: no Kafka offset of the window is reused


@dataclass(frozen=True)
class SeededHistory:
    start: datetime
    end: datetime
    readings: int
    reading_files: int
    weather_rows: int
    registry: pd.DataFrame


def history_options(window: SimulationOptions, days: int = HISTORY_DAYS) -> SimulationOptions:
    """The simulation behind the `days` days before `window`: same meters and seed (so the same
    fleet), no injected faults. It spans a day more on each side, so every local day that is cut
    at the history's edges is simulated whole: the simulator spreads a heat pump's daily energy
    over the quarter-hours of the local day it simulates, and a day cut to one hour would carry a
    whole day's heating in that hour."""
    if days < 1:
        raise ValueError(f"history days must be at least 1; got {days}")
    return SimulationOptions(
        meters=window.meters,
        start=window.start - timedelta(days=days + 1),
        end=window.start + timedelta(days=1),
        seed=window.seed,
        registry_seed=window.registry_seed if window.registry_seed is not None else window.seed,
    )


def validated_readings(frame: pd.DataFrame, ingested_at: datetime) -> pd.DataFrame:
    """Simulated readings as the gate publishes them (`readings.VALIDATED_SCHEMA`): one copy
    each, nothing corrected."""
    out = frame.copy()
    out["reading_ts"] = pd.to_datetime(out["reading_ts"], utc=True)
    out["topic"] = SEEDED_TOPIC
    out["partition"] = 0
    out["offset"] = np.arange(len(out), dtype=np.int64)
    out["kafka_ts"] = out["reading_ts"]
    out["ingested_at"] = pd.Timestamp(ingested_at)
    out["delivered_copies"] = 1
    out["corrected"] = False
    return out[readings.VALIDATED_SCHEMA.names]


def write_validated_readings(root, frame: pd.DataFrame) -> int:
    """One `seeded_history.parquet` per UTC hour of `reading_ts` under validated/meter_readings
    (made durable together at the end, one sync for all); returns the files written."""
    frame = frame.sort_values("reading_ts", kind="stable", ignore_index=True)
    table = pa.Table.from_pandas(frame, schema=readings.VALIDATED_SCHEMA, preserve_index=False)
    hours = frame["reading_ts"].dt.floor("h").to_numpy()
    bounds = np.flatnonzero(np.r_[True, hours[1:] != hours[:-1], True])
    paths = []
    for first, stop in zip(bounds[:-1], bounds[1:], strict=True):
        hour = pd.Timestamp(hours[first])  # naive UTC: to_numpy() drops the zone
        path = lake.partition_path(root, "validated", readings.DATASET, date=f"{hour:%Y-%m-%d}", hour=f"{hour:%H}")
        lake.write_parquet(table.slice(first, stop - first), path / SEEDED_FILE, sync=False)
        paths.append(path / SEEDED_FILE)
    lake.sync(paths)
    return len(paths)


def dwd_observations(
    start: datetime, end: datetime, cities: list[str], seed: int, ingested_at: datetime
) -> pd.DataFrame:
    """Hourly DWD observations of `cities` from the fake APIs' weather model, in the weather
    contract's columns (empty when no city matches)."""
    ts = pd.date_range(start, end, freq="1h", inclusive="left", tz="UTC")
    frames = []
    for city in (c for c in CITIES if c.name in cities):
        w = ambient_weather(ts, city.lat, seed)
        temperature = w["temperature_celsius"].to_numpy()
        frames.append(
            pd.DataFrame(
                {
                    "city": city.name,
                    "region": city.region,
                    "grid_operator": city.tso,
                    "latitude": city.lat,
                    "longitude": city.lon,
                    "source": "dwd",
                    "station": None,
                    "observed_at": ts,
                    "temperature_celsius": temperature,
                    "humidity_percent": w["humidity_percent"].to_numpy(),
                    "pressure_hpa": w["pressure_hpa"].to_numpy(),
                    "wind_speed_ms": w["wind_speed_ms"].to_numpy(),
                    "wind_direction_degrees": w["wind_direction_degrees"].to_numpy(),
                    "cloud_cover_percent": w["cloud_cover_percent"].to_numpy(),
                    "visibility_km": 10.0,
                    "energy_demand_factor": np.round(1 + np.maximum(15 - temperature, 0) / 30, 3),
                    "ingested_at": pd.Timestamp(ingested_at),
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=weather.WEATHER_SCHEMA.names)
    return pd.concat(frames, ignore_index=True)


def write_validated_weather(
    root, start: datetime, end: datetime, cities: list[str], seed: int, ingested_at: datetime
) -> int:
    """Hourly DWD observations of `cities` (the fake APIs' weather model) under validated/weather."""
    frame = dwd_observations(start, end, cities, seed, ingested_at)
    if frame.empty:
        return 0
    for day, part in frame.groupby(frame["observed_at"].dt.strftime("%Y-%m-%d"), sort=True):
        path = lake.partition_path(root, "validated", weather.DATASET, date=day) / SEEDED_FILE
        lake.write_parquet(pa.Table.from_pandas(part, schema=weather.WEATHER_SCHEMA, preserve_index=False), path)
    return len(frame)


def seed_history(
    root, window: SimulationOptions, days: int = HISTORY_DAYS, fleet: pd.DataFrame | None = None
) -> SeededHistory:
    """Simulate the `days` days before `window` for the window's fleet and write them into the
    validated layer. `fleet` (the window's registry) is checked against the history's: a
    different fleet would make the history a different grid."""
    options = history_options(window, days)
    start = window.start - timedelta(days=days)
    simulation = simulate(options, messages=False)  # written to the lake directly, never produced
    if fleet is not None and not simulation.registry["meter_id"].reset_index(drop=True).equals(
        fleet["meter_id"].reset_index(drop=True)
    ):
        raise ValueError(
            f"seeded history: the simulated fleet (seed {options.seed}, {options.meters} meters) differs from "
            "the window's registry; history and window must come from the same meters"
        )
    ingested_at = pd.Timestamp.now(tz="UTC").to_pydatetime()
    kept = simulation.readings["reading_ts"].between(pd.Timestamp(start), pd.Timestamp(window.start), inclusive="right")
    frame = validated_readings(simulation.readings[kept], ingested_at)
    files = write_validated_readings(root, frame)
    cities = sorted(set(simulation.registry["city"]))
    weather_rows = write_validated_weather(root, start, window.start, cities, options.seed, ingested_at)
    return SeededHistory(start, window.start, len(frame), files, weather_rows, simulation.registry)

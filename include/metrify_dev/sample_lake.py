"""A small simulated lake for warehouse tests and benchmarks: raw meter readings (with duplicates
and a late delivery held back), grid status, weather and anomalies, in the lake's layouts, judged
by the real quality gate into validated/ (what the warehouse reads)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from metrify import lake
from metrify.contracts import readings
from metrify.contracts.geography import CITIES, TSOS
from metrify_dev.simulator import SimulationOptions, ambient_weather, grid_frequency, simulate

START = datetime(2026, 3, 28, tzinfo=UTC)  # spans the DST change of 2026-03-29


@dataclass
class LakeData:
    registry: pd.DataFrame
    readings: pd.DataFrame  # what was written to raw/, duplicates included, in delivery order
    verdicts: dict[str, str]  # gate status per judged interval
    late: pd.DataFrame  # readings held back, to be delivered late
    start: datetime
    end: datetime


TOPIC = "meter-readings"


def write_meter_readings(
    root, frame: pd.DataFrame, ingested_at: datetime, first_offset: int, partition: int = 0
) -> list[str]:
    """Write readings into raw/meter_readings/date=/hour= as one drained batch would: Kafka
    offsets `first_offset`.. in frame order, files named after the batch's offset range."""
    frame = frame.copy()
    frame["topic"] = TOPIC
    frame["partition"] = partition
    frame["offset"] = first_offset + np.arange(len(frame), dtype=np.int64)
    frame["kafka_ts"] = frame["reading_ts"]
    frame["ingested_at"] = pd.Timestamp(ingested_at)
    stem = f"{TOPIC}+{partition}+{first_offset:012d}-{first_offset + len(frame) - 1:012d}"
    ts = pd.to_datetime(frame["reading_ts"], utc=True)
    written = []
    for (day, hour), part in frame.groupby([ts.dt.strftime("%Y-%m-%d"), ts.dt.hour]):
        path = lake.partition_path(root, "raw", "meter_readings", date=day, hour=f"{hour:02d}") / f"{stem}.parquet"
        table = pa.Table.from_pandas(part[readings.RAW_SCHEMA.names], schema=readings.RAW_SCHEMA, preserve_index=False)
        lake.write_parquet(table, path)
        written.append(path.path)
    return written


def gate_lake(root) -> dict[str, str]:
    """Run the real quality gate over every raw interval it has not judged in its current state
    (meter readings per hour, grid status and weather per day); returns the status of each."""
    from metrify.quality.checkpoint import QualityGateError
    from metrify.quality.gate import changed_intervals, run_gate, run_source_gate

    statuses: dict[str, str] = {}
    for interval in changed_intervals(root, "meter_readings", hourly=True):
        label = f"meter_readings {interval.label}"
        try:
            statuses[label] = run_gate(interval.date, int(interval.hour or 0), build_docs=False).status
        except QualityGateError:
            statuses[label] = "blocked"
    for dataset in ("grid_status", "weather"):
        for interval in changed_intervals(root, dataset, hourly=False):
            label = f"{dataset} {interval.label}"
            try:
                statuses[label] = run_source_gate(dataset, interval.date, build_docs=False)["status"]
            except QualityGateError:
                statuses[label] = "blocked"
    return statuses


def write_grid_status(root, start: datetime, end: datetime, seed: int = 7) -> int:
    ts = pd.date_range(start, end, freq="15min", inclusive="left", tz="UTC")
    freq = grid_frequency(ts, seed)
    rng = np.random.default_rng(seed)
    rows = 0
    for i, op in enumerate(TSOS):
        total = 20000.0 + 5000 * i
        load = 0.55 + 0.2 * np.sin(2 * np.pi * (ts.hour.to_numpy() - 6) / 24) + rng.normal(0, 0.02, len(ts))
        frame = pd.DataFrame(
            {
                "operator_name": op,
                "reading_ts": ts,
                "total_capacity_mw": total,
                "available_capacity_mw": np.round(total * (1 - load), 1),
                "load_factor": np.round(load, 3),
                "frequency_hz": np.round(freq + rng.normal(0, 0.003, len(ts)), 3),
                "voltage_kv": 380.0,
                "grid_stability_score": np.round(np.clip(1 - np.abs(freq - 50) * 2 - 0.1 * load, 0, 1), 3),
                "renewable_percentage": np.round(rng.uniform(30, 70, len(ts)), 1),
                "region": op,
                "ingested_at": pd.Timestamp.now(tz="UTC"),
            }
        )
        for (day, hour), part in frame.groupby([ts.strftime("%Y-%m-%d"), ts.hour]):
            path = (
                lake.partition_path(root, "raw", "grid_status", operator=op, date=day, hour=f"{hour:02d}")
                / "poll.parquet"
            )
            lake.write_parquet(pa.Table.from_pandas(part, preserve_index=False), path)
            rows += len(part)
    return rows


def write_weather(root, start: datetime, end: datetime, cities: list[str], seed: int = 42) -> int:
    ts = pd.date_range(start, end, freq="1h", inclusive="left", tz="UTC")
    rows = 0
    for city in (c for c in CITIES if c.name in cities):
        w = ambient_weather(ts, city.lat, seed)
        for source, bias in (("dwd", 0.0), ("openweathermap", 0.3)):
            frame = pd.DataFrame(
                {
                    "city": city.name,
                    "source": source,
                    "observed_at": ts,
                    "temperature_celsius": w["temperature_celsius"].to_numpy() + bias,
                    "humidity_percent": w["humidity_percent"].to_numpy(),
                    "pressure_hpa": w["pressure_hpa"].to_numpy(),
                    "wind_speed_ms": w["wind_speed_ms"].to_numpy(),
                    "wind_direction_degrees": w["wind_direction_degrees"].to_numpy(),
                    "cloud_cover_percent": w["cloud_cover_percent"].to_numpy(),
                    "visibility_km": 10.0,
                    "energy_demand_factor": np.round(
                        1 + np.maximum(15 - w["temperature_celsius"].to_numpy(), 0) / 30, 3
                    ),
                    "ingested_at": pd.Timestamp.now(tz="UTC"),
                }
            )
            for (day, hour), part in frame.groupby([ts.strftime("%Y-%m-%d"), ts.hour]):
                path = (
                    lake.partition_path(root, "raw", "weather", source=source, date=day, hour=f"{hour:02d}")
                    / f"{city.postal_code}.parquet"
                )
                lake.write_parquet(pa.Table.from_pandas(part, preserve_index=False), path)
                rows += len(part)
    return rows


def write_anomalies(root, frame: pd.DataFrame) -> int:
    """Anomaly rows (as the anomaly tasks write them): one spike finding for the given readings."""
    out = pd.DataFrame(
        {
            "meter_id": frame["meter_id"],
            "reading_ts": pd.to_datetime(frame["reading_ts"], utc=True),
            "anomaly_type": "spike",
            "severity": "warning",
            "score": 9.5,
            "detector": "robust_z",
            "details": "{}",
        }
    )
    if out.empty:
        return 0
    for day, part in out.groupby(out["reading_ts"].dt.strftime("%Y-%m-%d")):
        path = lake.partition_path(root, "anomalies", "meter_readings", date=day) / "rules.parquet"
        lake.write_parquet(pa.Table.from_pandas(part, preserve_index=False), path)
    return len(out)


def build_lake(
    root,
    meters: int = 20,
    days: int = 2,
    seed: int = 11,
    gate: bool = True,
    drop: Callable[[pd.DataFrame, pd.DataFrame], pd.Series] | None = None,
) -> LakeData:
    """Simulate `days` days for `meters` meters; write raw readings (with identical and
    conflicting duplicates), grid status, weather and anomalies; judge them with the gate.

    `drop(readings, registry)` returns a mask of simulated readings that never arrive (gaps for
    the substitute values); they are left out of `LakeData.readings` too."""
    end = START + timedelta(days=days)
    sim = simulate(SimulationOptions(meters=meters, start=START, end=end, seed=seed))
    frame = sim.readings.copy()
    frame["reading_ts"] = pd.to_datetime(frame["reading_ts"], utc=True)
    if drop is not None:
        frame = frame[~drop(frame, sim.registry).to_numpy()]
    # hold back meter 0's readings that close 2026-03-28 02:15..03:00 (hour 02): delivered late
    late_mask = (frame["meter_id"] == sim.registry["meter_id"].iloc[0]) & frame["reading_ts"].between(
        pd.Timestamp("2026-03-28 02:15", tz="UTC"), pd.Timestamp("2026-03-28 03:00", tz="UTC")
    )
    late = frame[late_mask].copy()
    frame = frame[~late_mask]
    first = datetime(2026, 3, 30, 6, tzinfo=UTC)
    write_meter_readings(root, frame, first, first_offset=0)
    # a second delivery of some readings, later in Kafka: identical copies and one correction
    dupes = frame.iloc[100:110].copy()
    dupes.loc[dupes.index[0], "consumption_kwh"] += 1.0
    write_meter_readings(root, dupes, first + timedelta(hours=1), first_offset=10_000)
    all_rows = pd.concat([frame, dupes], ignore_index=True)
    write_grid_status(root, START, end)
    write_weather(root, START, end, sorted(set(sim.registry["city"])))
    write_anomalies(root, frame.iloc[[5]])
    verdicts = gate_lake(root) if gate else {}
    return LakeData(sim.registry, all_rows, verdicts, late, START, end)

"""The canonical `grid_status` contract and how each field is derived, per control area.

One row per operator and quarter-hour; `reading_ts` is the END of the 15-minute interval (UTC),
as in `meter_readings`, so the two join on (grid_operator, reading_ts).

| field | origin |
|---|---|
| operator_name | TenneT, 50Hertz, Amprion, TransnetBW (`metrify.contracts.geography.TSOS`) |
| control_area_eic | ENTSO-E EIC code of the control area (`entsoe.CONTROL_AREAS`) |
| region | federal states in the control area (`metrify.contracts.geography`) |
| load_mw | ENTSO-E A65 actual total load, mean MW over the quarter-hour |
| total_capacity_mw | ENTSO-E A68 installed generation capacity, sum over production types (year) |
| available_capacity_mw | total_capacity_mw − load_mw (head-room of installed capacity over load) |
| load_factor | load_mw / total_capacity_mw |
| generation_mw | ENTSO-E A75 actual generation, sum over production types |
| renewable_percentage | 100 × renewable A75 generation / generation_mw (`entsoe.RENEWABLE_PSR`) |
| frequency_hz | gridradar `frequency-ucte-median-1s`, mean of 1-minute medians per quarter-hour |
| voltage_kv | 380.0, the nominal extra-high-voltage level: a documented constant (no TSO publishes bus voltages) |
| grid_stability_score | see `stability_score` |

Stability score (0–100, higher is calmer), from three terms in [0, 1]:

    frequency = clip(1 − |f − 50 Hz| / 0.2 Hz, 0, 1)          # 0 at the edge of the ±0.2 Hz normal band
    reserve   = clip((1 − load_factor) / 0.5, 0, 1)          # full when load is at most half of capacity
    inertia   = 1 − 0.5 × renewable_percentage / 100          # inverter-fed generation adds no inertia
    score     = round(100 × (0.5 × frequency + 0.3 × reserve + 0.2 × inertia), 1)
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from metrify import lake
from metrify.contracts.geography import CITIES
from metrify.contracts.grid import DATASET, GRID_SCHEMA
from metrify.contracts.thresholds import FREQUENCY_BAND_HZ, FREQUENCY_NOMINAL_HZ, TRANSMISSION_VOLTAGE_KV
from metrify.sources import NoDataError, PayloadError, entsoe, gridradar
from metrify.sources.http import AuthError, Endpoint, HttpClient, HttpError
from metrify.sources.landing import quarantine, raw_path, stamp

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

QUARTER = timedelta(minutes=15)


class SourceFailed(RuntimeError):
    """A source's task cannot complete; the message says which source, which data and what to do."""


def region_of(operator: str) -> str:
    return ", ".join(sorted({c.region for c in CITIES if c.tso == operator}))


def stability_score(frequency_hz: Any, load_factor: Any, renewable_percentage: Any) -> np.ndarray:
    """The documented 0–100 grid stability score (see module docstring); NaN where an input is missing."""
    f = np.asarray(frequency_hz, dtype=float)
    lf = np.asarray(load_factor, dtype=float)
    re = np.asarray(renewable_percentage, dtype=float)
    frequency = np.clip(1 - np.abs(f - FREQUENCY_NOMINAL_HZ) / FREQUENCY_BAND_HZ, 0, 1)
    reserve = np.clip((1 - lf) / 0.5, 0, 1)
    inertia = 1 - 0.5 * np.clip(re, 0, 100) / 100
    return np.round(100 * (0.5 * frequency + 0.3 * reserve + 0.2 * inertia), 1)


def quarters(start: datetime, end: datetime) -> list[datetime]:
    """Quarter-hour starts in [start, end) (start is floored to a quarter-hour)."""
    first = pd.Timestamp(start).tz_convert("UTC").floor("15min")
    return [
        ts.to_pydatetime()
        for ts in pd.date_range(first, pd.Timestamp(end).tz_convert("UTC"), freq="15min", inclusive="left")
    ]


def build_rows(
    operator: str, load: pd.Series, generation: pd.DataFrame, capacity: dict[str, float], frequency: pd.Series
) -> pd.DataFrame:
    """Join the per-quarter inputs into grid_status rows (index: quarter start)."""
    index = load.index
    total_capacity = float(sum(capacity.values()))
    gen = generation.reindex(index)
    generation_mw = gen.sum(axis=1, min_count=1)
    renewable_cols = [c for c in gen.columns if c in entsoe.RENEWABLE_PSR]
    renewable_mw = gen[renewable_cols].sum(axis=1, min_count=1) if renewable_cols else generation_mw * 0
    renewable_pct = (100 * renewable_mw / generation_mw.where(generation_mw > 0)).round(2)
    load_factor = (load / total_capacity).round(4) if total_capacity > 0 else load * np.nan
    hz = frequency.reindex(index).round(4)
    frame = pd.DataFrame(
        {
            "operator_name": operator,
            "control_area_eic": entsoe.CONTROL_AREAS[operator],
            "region": region_of(operator),
            "reading_ts": index + QUARTER,
            "load_mw": load.round(1).to_numpy(),
            "total_capacity_mw": round(total_capacity, 1),
            "available_capacity_mw": (total_capacity - load).round(1).to_numpy(),
            "load_factor": load_factor.to_numpy(),
            "generation_mw": generation_mw.round(1).to_numpy(),
            "renewable_percentage": renewable_pct.to_numpy(),
            "frequency_hz": hz.to_numpy(),
            "voltage_kv": TRANSMISSION_VOLTAGE_KV,
        },
        index=index,
    )
    frame["grid_stability_score"] = stability_score(
        frame["frequency_hz"], frame["load_factor"], frame["renewable_percentage"]
    )
    frame["source"] = "entsoe:A65+A75+A68;gridradar:" + gridradar.METRIC
    return frame


def fetch_frequency(endpoint: Endpoint, start: datetime, end: datetime) -> dict[str, float]:
    """Frequency per quarter-hour start (ISO string -> Hz), for passing between tasks as XCom."""
    series = gridradar.fetch_frequency(HttpClient(endpoint), start, end)
    return {ts.isoformat(): float(v) for ts, v in series.items()}


def ingest_operator(
    operator: str,
    start: datetime,
    end: datetime,
    entsoe_endpoint: Endpoint,
    frequency: dict[str, float],
    root: ObjectStoragePath,
) -> dict[str, Any]:
    """Fetch one control area's [start, end) from ENTSO-E and land one raw file per quarter-hour.

    A malformed payload is quarantined and fails with `SourceFailed`; so does a missing interval.
    """
    eic = entsoe.CONTROL_AREAS[operator]
    client = HttpClient(entsoe_endpoint)
    try:
        load = entsoe.fetch_actual_load(client, eic, start, end)
        generation = entsoe.fetch_generation(client, eic, start, end)
        capacity = entsoe.fetch_installed_capacity(client, eic, start.astimezone(UTC).year)
    except PayloadError as exc:
        path = quarantine(root, DATASET, exc, operator, start, end)
        raise SourceFailed(
            f"{operator} ({eic}): ENTSO-E sent a payload we cannot read for "
            f"{start.isoformat()}..{end.isoformat()}: {exc.reason}. Quarantined at {path}. "
            f"Check whether the API format changed; then clear this task."
        ) from None
    except NoDataError as exc:
        raise SourceFailed(
            f"{operator} ({eic}): {exc}. ENTSO-E publishes actual load up to an hour late; "
            f"Airflow retries this task, or backfill the interval later."
        ) from None
    except AuthError:
        raise
    except HttpError as exc:
        raise SourceFailed(
            f"{operator} ({eic}): ENTSO-E request failed for {start.isoformat()}.."
            f"{end.isoformat()}: {exc}. The other operators are unaffected; Airflow retries this "
            f"task."
        ) from None
    freq = pd.Series({pd.Timestamp(k): v for k, v in frequency.items()}, dtype=float)
    if not freq.empty:
        freq.index = pd.DatetimeIndex(freq.index).tz_convert("UTC")
    wanted = quarters(start, end)
    missing = [ts for ts in wanted if pd.Timestamp(ts) not in load.index]
    frame = build_rows(operator, load, generation, capacity, freq)
    ingested_at = datetime.now(UTC)
    files = []
    for ts in wanted:
        if pd.Timestamp(ts) not in frame.index:
            continue
        row = frame.loc[[pd.Timestamp(ts)]].assign(ingested_at=ingested_at)
        table = pa.Table.from_pandas(row.reset_index(drop=True), schema=GRID_SCHEMA, preserve_index=False)
        reading_ts = ts + QUARTER
        path = raw_path(root, DATASET, "operator", operator, reading_ts, stamp(reading_ts))
        lake.write_parquet(table, path)
        files.append(str(path))
    summary = {
        "operator": operator,
        "rows": len(files),
        "missing_quarters": [t.isoformat() for t in missing],
        "entsoe_calls": client.calls,
    }
    log.info(
        "%s: landed %d quarter-hours of grid status for %s..%s",
        operator,
        len(files),
        start.isoformat(),
        end.isoformat(),
    )
    if missing:
        raise SourceFailed(
            f"{operator} ({eic}): ENTSO-E has no actual load for {len(missing)} of {len(wanted)} "
            f"quarter-hours (first {missing[0].isoformat()}); the others landed. Airflow retries "
            f"this task; backfill the interval if the data arrives later."
        )
    return summary

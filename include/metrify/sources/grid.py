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
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from metrify import lake
from metrify.contracts.geography import CITIES
from metrify.contracts.grid import DATASET, GRID_SCHEMA
from metrify.contracts.thresholds import FREQUENCY_BAND_HZ, FREQUENCY_NOMINAL_HZ, TRANSMISSION_VOLTAGE_KV
from metrify.sources import NoDataError, PayloadError, entsoe, gridradar, publication
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


def _or_unpublished(fetch: Callable[..., Any], *args: Any) -> Any:
    """The fetched document, or None when ENTSO-E has nothing for the window yet ("no data")."""
    try:
        return fetch(*args)
    except NoDataError:
        return None


def published_parts(
    load: pd.Series | None, generation: pd.DataFrame | None
) -> tuple[set[pd.Timestamp], set[pd.Timestamp]]:
    """Quarter-hour starts with actual load (A65), and those with generation (A75)."""
    with_load = set() if load is None else set(load.dropna().index)
    if generation is None or generation.empty:
        return with_load, set()
    return with_load, set(generation.index[generation.notna().any(axis=1)])


def with_landed_frequency(row: pd.DataFrame, path: ObjectStoragePath) -> pd.DataFrame:
    """A re-poll without a frequency for this quarter-hour keeps the one landed before (gridradar's
    free tier does not let a client choose the period it returns): never replace a value with nothing."""
    if not row["frequency_hz"].isna().all() or not path.exists():
        return row
    with path.open("rb") as handle:
        landed = pq.read_table(handle, columns=["frequency_hz"]).column(0)[0].as_py()
    if landed is None:
        return row
    row = row.assign(frequency_hz=landed)
    row["grid_stability_score"] = stability_score(row["frequency_hz"], row["load_factor"], row["renewable_percentage"])
    return row


def ingest_operator(
    operator: str,
    start: datetime,
    end: datetime,
    entsoe_endpoint: Endpoint,
    frequency: dict[str, float],
    root: ObjectStoragePath,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Fetch one control area's [start, end) from ENTSO-E (one request per document, whatever the
    window's length) and land one raw file per published quarter-hour, replacing an earlier one.

    A quarter-hour is published when it has actual load and generation. One still missing inside
    ENTSO-E's publication delay is skipped (a later run's trailing re-poll lands it); one missing
    after it fails the task with `SourceFailed` once the others have landed. So does a malformed
    payload, after it is quarantined.
    """
    now = now or datetime.now(UTC)
    eic = entsoe.CONTROL_AREAS[operator]
    client = HttpClient(entsoe_endpoint)
    window = f"{start.isoformat()}..{end.isoformat()}"
    try:
        load = _or_unpublished(entsoe.fetch_actual_load, client, eic, start, end)
        generation = _or_unpublished(entsoe.fetch_generation, client, eic, start, end)
        capacity = entsoe.fetch_installed_capacity(client, eic, start.astimezone(UTC).year)
    except PayloadError as exc:
        path = quarantine(root, DATASET, exc, operator, start, end)
        raise SourceFailed(
            f"{operator} ({eic}): ENTSO-E sent a payload we cannot read for {window}: {exc.reason}. "
            f"Quarantined at {path}. Check whether the API format changed; then clear this task."
        ) from None
    except NoDataError as exc:
        raise SourceFailed(
            f"{operator} ({eic}): {exc}. Without the installed capacity (A68, published once a year "
            f"ahead) no row can be computed: check the year on the Transparency Platform (connection "
            f"'{entsoe_endpoint.conn_id}'), then clear this task."
        ) from None
    except AuthError:
        raise
    except HttpError as exc:
        raise SourceFailed(
            f"{operator} ({eic}): ENTSO-E request failed for {window}: {exc}. The other operators are "
            f"unaffected; Airflow retries this task."
        ) from None
    freq = pd.Series({pd.Timestamp(k): v for k, v in frequency.items()}, dtype=float)
    if not freq.empty:
        freq.index = pd.DatetimeIndex(freq.index).tz_convert("UTC")
    wanted = quarters(start, end)
    with_load, with_generation = published_parts(load, generation)
    published = with_load & with_generation  # a quarter-hour lands complete or not at all
    unpublished = [ts for ts in wanted if pd.Timestamp(ts) not in published]
    overdue, pending = publication.split_due(unpublished, QUARTER, entsoe.PUBLICATION_DELAY, now)
    ingested_at = datetime.now(UTC)
    files = []
    if published and load is not None and generation is not None:
        frame = build_rows(operator, load[load.index.isin(list(published))], generation, capacity, freq)
        for ts in wanted:
            if pd.Timestamp(ts) not in published:
                continue
            reading_ts = ts + QUARTER
            path = raw_path(root, DATASET, "operator", operator, reading_ts, stamp(reading_ts))
            row = with_landed_frequency(frame.loc[[pd.Timestamp(ts)]], path).assign(ingested_at=ingested_at)
            table = pa.Table.from_pandas(row.reset_index(drop=True), schema=GRID_SCHEMA, preserve_index=False)
            lake.write_parquet(table, path)
            files.append(str(path))
    log.info("%s: landed %d of %d quarter-hours of grid status for %s", operator, len(files), len(wanted), window)
    if pending:
        log.info(
            "%s: %s not yet published, skipped (ENTSO-E publishes up to %s late; the next runs re-poll them): %s",
            operator,
            publication.count(len(pending), "quarter-hour"),
            publication.hours_text(entsoe.PUBLICATION_DELAY),
            publication.spans(pending, QUARTER),
        )
    if overdue:
        no_load = sum(pd.Timestamp(ts) not in with_load for ts in overdue)
        no_generation = sum(pd.Timestamp(ts) not in with_generation for ts in overdue)
        parts = []
        if no_load:
            parts.append(f"no actual load A65 for {no_load}")
        if no_generation:
            parts.append(f"no generation A75 for {no_generation}")
        others = f"The {publication.count(len(files), 'published quarter-hour')} of {window} landed. "
        raise SourceFailed(
            f"{operator} ({eic}): ENTSO-E has not published {publication.count(len(overdue), 'quarter-hour')} "
            f"older than its {publication.hours_text(entsoe.PUBLICATION_DELAY)} publication delay: "
            f"{publication.spans(overdue, QUARTER)} ({', '.join(parts)}; connection "
            f"'{entsoe_endpoint.conn_id}'). {others if files else ''}Airflow retries this task and later "
            f"runs re-poll their trailing window; if the data stays missing, follow {publication.RUNBOOK_SECTION}."
        )
    return {
        "operator": operator,
        "rows": len(files),
        "missing_quarters": [t.isoformat() for t in overdue],
        "pending_quarters": [t.isoformat() for t in pending],
        "entsoe_calls": client.calls,
    }

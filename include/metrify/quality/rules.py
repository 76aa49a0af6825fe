"""Row rules of the meter-readings gate: what makes a reading unusable, and what is only suspect.

`evaluate_rows` gives every row a quarantine `reason` if it cannot be used downstream (negative
import, voltage or frequency outside the physical bounds, a missing required value, a reading
outside the interval, an exact or a conflicting duplicate), and warning flags if it is merely
implausible (voltage outside EN 50160, frequency outside the normal band, late ingestion).
Vectorised with numpy: texts are written only for the (few) failing rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from metrify.contracts.readings import MEASUREMENTS
from metrify.contracts.thresholds import (
    FREQUENCY_BAND_HZ,
    FREQUENCY_NOMINAL_HZ,
    FREQUENCY_PHYSICAL_HZ,
    VOLTAGE_BAND_V,
    VOLTAGE_PHYSICAL_V,
)
from metrify.quality.anomalies import epoch_us

INTERVAL = pd.Timedelta(minutes=15)
TIMELY_MINUTES = 60.0  # ingested within an hour of reaching Kafka is timely
DELIVERY_MINUTES = 24 * 60.0  # a meter's reading should reach Kafka within a day
REQUIRED_FOR_USE = ("meter_id", "reading_ts", "consumption_kwh", "voltage", "frequency")
WARN_VOLTAGE, WARN_FREQUENCY, WARN_LATE = 1, 2, 4


def _says(text: str) -> Callable[[int], str]:
    return lambda row: text


@dataclass
class Duplicates:
    """Copies of the same (meter_id, reading_ts) reading, resolved in Kafka order."""

    superseded: np.ndarray  # every copy but the reading of record
    conflict: np.ndarray  # every copy of a reading whose copies differ in value (a correction)
    copies: np.ndarray  # how many copies the row's reading has
    record: np.ndarray  # row position of the reading of record of each row's reading


def duplicate_status(frame: pd.DataFrame) -> Duplicates:
    """Which copy of each (meter_id, reading_ts) is the reading of record: the last in Kafka order.

    The order of record is the order Kafka delivered the copies: the partition offset when all
    copies are in one partition, else the producer's timestamp (`kafka_ts`; the key moved
    partitions), then partition and offset. A later correction therefore wins over an earlier
    value, also when the earlier value is re-ingested later. Without Kafka columns (tests on
    bare frames) the row order is the delivery order.
    """
    n = len(frame)
    if n == 0:
        empty = np.zeros(0, dtype=bool)
        return Duplicates(empty, empty, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    codes, _ = pd.factorize(frame["meter_id"])
    ts = epoch_us(frame["reading_ts"])
    slot = (ts - ts.min()) // 1_000_000  # seconds since the earliest reading
    key = codes.astype(np.int64) * (int(slot.max()) + 1) + slot
    _, group = np.unique(key, return_inverse=True)
    partition = frame["partition"].to_numpy(dtype=np.int64) if "partition" in frame else np.zeros(n, np.int64)
    offset = frame["offset"].to_numpy(dtype=np.int64) if "offset" in frame else np.arange(n, dtype=np.int64)
    kafka_ts = epoch_us(frame["kafka_ts"]) if "kafka_ts" in frame else np.zeros(n, np.int64)
    # partitions per reading: one -> offsets order the copies; several -> producer timestamps do
    pairs = np.unique(np.stack([group, partition]), axis=1)
    partitions_per_group = np.bincount(pairs[0], minlength=int(group.max()) + 1)
    primary = np.where(partitions_per_group[group] == 1, offset, kafka_ts)
    order = np.lexsort((np.arange(n), offset, partition, primary, group))  # Kafka order within each reading
    group_sorted = group[order]
    last = np.ones(n, dtype=bool)
    last[:-1] = group_sorted[:-1] != group_sorted[1:]
    record_of_group = np.empty(int(group.max()) + 1, dtype=np.int64)
    record_of_group[group_sorted[last]] = order[last]
    record = record_of_group[group]
    differs = np.zeros(n, dtype=bool)
    for name in MEASUREMENTS:
        if name not in frame:
            continue
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        a, b = values, values[record]
        differs |= ~((a == b) | (np.isnan(a) & np.isnan(b)))
    group_conflict = np.bincount(group, weights=differs.astype(float)) > 0
    return Duplicates(
        superseded=np.arange(n) != record,
        conflict=group_conflict[group],
        copies=np.bincount(group)[group],
        record=record,
    )


def evaluate_rows(
    frame: pd.DataFrame, window_start: pd.Timestamp, window_end: pd.Timestamp, now: pd.Timestamp | None = None
) -> pd.DataFrame:
    """The raw rows plus `reason` (quarantine, None if usable), `warning_flags`, `duplicate`
    (exact / conflict), `repeat` (a copy superseded by the reading of record),
    `ingestion_lag_minutes` (Kafka to lake) and `delivery_lag_minutes` (meter to Kafka).
    The window is [window_start, window_end) on reading_ts."""
    out = frame.copy()
    n = len(out)
    reason = np.full(n, None, dtype=object)

    def numbers(name: str) -> np.ndarray:
        """A numeric column as floats; a missing or non-numeric column is all NaN (the GX schema
        expectations report it and block the interval; here its rows get 'missing required value')."""
        if name not in out:
            return np.full(n, np.nan)
        return pd.to_numeric(out[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)

    with np.errstate(invalid="ignore"):
        consumption = numbers("consumption_kwh")
        voltage = numbers("voltage")
        frequency = numbers("frequency")
        ts = epoch_us(out["reading_ts"])
        start_us = int(pd.Timestamp(window_start).value // 1000)
        end_us = int(pd.Timestamp(window_end).value // 1000)
        duplicates = duplicate_status(out)
        repeat, conflict, copies, record = (
            duplicates.superseded,
            duplicates.conflict,
            duplicates.copies,
            duplicates.record,
        )
        lineage = (
            out["partition"].to_numpy() if "partition" in out else np.zeros(n, np.int64),
            out["offset"].to_numpy() if "offset" in out else np.arange(n),
        )
        rules: list[tuple[np.ndarray, Callable[[int], str]]] = []
        for name in REQUIRED_FOR_USE:
            missing = out[name].isna().to_numpy() if name in out else np.ones(n, dtype=bool)
            rules.append((missing, _says(f"missing required value: {name}")))
        rules += [
            (
                repeat & conflict,
                lambda i: (
                    f"superseded by a later correction: {copies[i]} copies of this meter_id and reading_ts "
                    f"differ; the reading of record is partition {lineage[0][record[i]]} offset "
                    f"{lineage[1][record[i]]} (the last in Kafka order)"
                ),
            ),
            (
                repeat & ~conflict,
                lambda i: (
                    f"exact duplicate: same meter_id, reading_ts and values as the reading of record, partition "
                    f"{lineage[0][record[i]]} offset {lineage[1][record[i]]}"
                ),
            ),
            (
                (ts < start_us) | (ts >= end_us),
                lambda i: f"reading_ts outside the gate interval [{window_start}, {window_end})",
            ),
            (
                consumption < 0,
                lambda i: (
                    f"negative consumption: consumption_kwh={consumption[i]:g} < 0 (import register delta must be >= 0)"
                ),
            ),
            (
                (voltage < VOLTAGE_PHYSICAL_V[0]) | (voltage > VOLTAGE_PHYSICAL_V[1]),
                lambda i: (
                    f"voltage={voltage[i]:g} V outside the physical bounds "
                    f"{VOLTAGE_PHYSICAL_V[0]:g}..{VOLTAGE_PHYSICAL_V[1]:g} V"
                ),
            ),
            (
                (frequency < FREQUENCY_PHYSICAL_HZ[0]) | (frequency > FREQUENCY_PHYSICAL_HZ[1]),
                lambda i: (
                    f"frequency={frequency[i]:g} Hz outside the physical bounds "
                    f"{FREQUENCY_PHYSICAL_HZ[0]:g}..{FREQUENCY_PHYSICAL_HZ[1]:g} Hz"
                ),
            ),
        ]
        bad = np.zeros(n, dtype=bool)
        for mask, _ in rules:
            bad |= mask
        for i in np.flatnonzero(bad):  # texts only for the (few) quarantined rows
            reason[i] = "; ".join(text(int(i)) for mask, text in rules if mask[i])
        flags = np.zeros(n, dtype=np.int8)
        flags |= np.where((voltage < VOLTAGE_BAND_V[0]) | (voltage > VOLTAGE_BAND_V[1]), WARN_VOLTAGE, 0).astype(
            np.int8
        )
        flags |= np.where(np.abs(frequency - FREQUENCY_NOMINAL_HZ) > FREQUENCY_BAND_HZ, WARN_FREQUENCY, 0).astype(
            np.int8
        )
        # timeliness is split where responsibility changes hands: delivery (meter/head-end to
        # Kafka: kafka_ts - reading_ts) and ingestion (Kafka to the lake: ingested_at - kafka_ts).
        # A backfilled day is late in delivery, not in ingestion.
        reference = int(pd.Timestamp(now or pd.Timestamp.now(tz="UTC")).value // 1000)
        sent = epoch_us(out["kafka_ts"]) if "kafka_ts" in out else ts
        arrived = epoch_us(out["ingested_at"]) if "ingested_at" in out else np.full(n, reference)
        lag = (arrived - sent) / 60e6
        delivery = (sent - ts) / 60e6
        flags |= np.where(lag > TIMELY_MINUTES, WARN_LATE, 0).astype(np.int8)
    out["reason"] = pd.Series(reason, index=out.index, dtype=object)
    out["warning_flags"] = flags
    duplicate = np.full(n, None, dtype=object)
    duplicate[repeat] = "exact"
    duplicate[conflict] = "conflict"
    out["duplicate"] = duplicate
    out["repeat"] = repeat  # a copy superseded by the reading of record
    out["copies"] = copies
    out["conflict"] = conflict
    out["ingestion_lag_minutes"] = np.round(lag, 2)
    out["delivery_lag_minutes"] = np.round(delivery, 2)
    return out

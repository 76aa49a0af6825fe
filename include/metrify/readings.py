"""The `meter_readings` contract: decoding Kafka messages and validating them.

A message is one JSON object per 15-minute reading, keyed by meter id:

    {"meter_id": "DE0000011011500000000000000000001", "reading_ts": "2026-11-22T00:15:00Z",
     "consumption_kwh": 0.118, "export_kwh": 0.0, "voltage": 231.4, "current": 2.1,
     "power_factor": 0.97, "frequency": 50.01, "temperature": 6.2, "humidity": 81.0}

`reading_ts` is the end of the interval in UTC (any ISO-8601 offset is accepted and converted).
Decoding is vectorised with Arrow's JSON reader; a block that Arrow cannot read (bad JSON, a
wrong type) is split until the offending messages are isolated and explained one by one, so a
poison message costs a little time and never blocks or drops its neighbours.

Validation here is the ingestion contract only: structure, types and physically impossible
values. Plausibility (negative import, voltage outside EN 50160, stuck meters) is the quality
gate's and the anomaly tasks' job, so those rows land in `raw/` with everything else.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

DATASET = "meter_readings"
INTERVAL_SECONDS = 15 * 60

PAYLOAD_SCHEMA = pa.schema(
    [
        ("meter_id", pa.string()),
        ("reading_ts", pa.timestamp("us", tz="UTC")),
        ("consumption_kwh", pa.float64()),
        ("export_kwh", pa.float64()),
        ("voltage", pa.float64()),
        ("current", pa.float64()),
        ("power_factor", pa.float64()),
        ("frequency", pa.float64()),
        ("temperature", pa.float64()),
        ("humidity", pa.float64()),
    ]
)
METADATA_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("kafka_ts", pa.timestamp("ms", tz="UTC")),
        ("ingested_at", pa.timestamp("us", tz="UTC")),
    ]
)
RAW_SCHEMA = pa.unify_schemas([PAYLOAD_SCHEMA, METADATA_SCHEMA])
QUARANTINE_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("kafka_ts", pa.timestamp("ms", tz="UTC")),
        ("key", pa.binary()),
        ("raw_value", pa.binary()),
        ("reason", pa.string()),
        ("quarantined_at", pa.timestamp("us", tz="UTC")),
    ]
)

REQUIRED = ("meter_id", "reading_ts", "consumption_kwh", "export_kwh", "voltage", "current",
            "power_factor", "frequency")
NUMERIC = tuple(f.name for f in PAYLOAD_SCHEMA if pa.types.is_floating(f.type))

# Hard physical bounds (inclusive): a value outside can only be a broken device or encoder.
# Plausibility limits are narrower and belong to the quality gate.
BOUNDS: dict[str, tuple[float, float, str]] = {
    "consumption_kwh": (-1000.0, 1000.0, "kWh per 15 min"),
    "export_kwh": (0.0, 1000.0, "kWh per 15 min"),
    "voltage": (0.0, 1000.0, "V"),
    "current": (0.0, 2000.0, "A"),
    "power_factor": (0.0, 1.0, ""),
    "frequency": (40.0, 60.0, "Hz"),
    "temperature": (-60.0, 90.0, "°C"),
    "humidity": (0.0, 100.0, "%"),
}
METER_ID_MAX_LEN = 64
EARLIEST_READING = datetime(2000, 1, 1, tzinfo=timezone.utc)
MAX_CLOCK_SKEW_SECONDS = 24 * 3600
_BISECT_MIN = 32
_READ_OPTIONS = pa_json.ReadOptions(block_size=8 << 20)
_PARSE_OPTIONS = pa_json.ParseOptions(
    explicit_schema=PAYLOAD_SCHEMA, unexpected_field_behavior="ignore", newlines_in_values=False
)


@dataclass
class Decoded:
    """Rows that passed the contract and messages that did not, by position in the input."""

    rows: pa.Table  # PAYLOAD_SCHEMA plus an int64 `_index` column: position in the input
    rejected: list[tuple[int, str]]  # (position in the input, reason)


def decode(values: Sequence[bytes | None], now: datetime | None = None) -> Decoded:
    """Decode and validate a batch of message values."""
    now = now or datetime.now(timezone.utc)
    tables: list[pa.Table] = []
    rejected: list[tuple[int, str]] = []
    _parse_range(values, 0, len(values), tables, rejected)
    rows = (
        pa.concat_tables(tables)
        if tables
        else PAYLOAD_SCHEMA.empty_table().append_column("_index", pa.array([], pa.int64()))
    )
    rows, invalid = _check_rows(rows, now)
    rejected.extend(invalid)
    return Decoded(rows=rows, rejected=rejected)


def _parse_range(values: Sequence[bytes | None], start: int, stop: int,
                 tables: list[pa.Table], rejected: list[tuple[int, str]]) -> None:
    """Parse values[start:stop] with Arrow; bisect around blocks it cannot read."""
    if start >= stop:
        return
    chunk = values[start:stop]
    if stop - start <= _BISECT_MIN:
        for position in range(start, stop):
            row, reason = _parse_one(values[position])
            if reason is None:
                tables.append(row.append_column("_index", pa.array([position], pa.int64())))
            else:
                rejected.append((position, reason))
        return
    try:
        table = pa_json.read_json(io.BytesIO(b"\n".join(chunk)), read_options=_READ_OPTIONS,
                                  parse_options=_PARSE_OPTIONS)  # TypeError: a message without value
        if table.num_rows != stop - start:  # an empty value or a value spanning lines
            raise ValueError("row count mismatch")
    except (pa.ArrowInvalid, ValueError, TypeError):
        middle = (start + stop) // 2
        _parse_range(values, start, middle, tables, rejected)
        _parse_range(values, middle, stop, tables, rejected)
        return
    tables.append(table.append_column("_index", pa.array(range(start, stop), pa.int64())))


def _parse_one(value: bytes | None) -> tuple[pa.Table | None, str | None]:
    """Decode one message in Python, explaining exactly what is wrong with it."""
    if value is None or value == b"":
        return None, "empty message (no value)"
    try:
        payload = json.loads(value)
    except (UnicodeDecodeError, ValueError) as exc:
        return None, f"not valid JSON: {exc}"
    if not isinstance(payload, dict):
        return None, f"not a JSON object: got {type(payload).__name__}"
    record: dict[str, object] = {}
    for field in PAYLOAD_SCHEMA:
        value_ = payload.get(field.name)
        if value_ is None:
            record[field.name] = None
        elif field.name == "meter_id":
            if not isinstance(value_, str):
                return None, f"wrong type: meter_id must be a string, got {type(value_).__name__}"
            record[field.name] = value_
        elif field.name == "reading_ts":
            if not isinstance(value_, str):
                return None, f"wrong type: reading_ts must be an ISO-8601 string, got {type(value_).__name__}"
            try:
                parsed = datetime.fromisoformat(value_)
            except ValueError:
                return None, f"wrong type: reading_ts {value_!r} is not an ISO-8601 timestamp"
            if parsed.tzinfo is None:
                return None, f"reading_ts {value_!r} has no UTC offset"
            record[field.name] = parsed.astimezone(timezone.utc)
        else:
            if isinstance(value_, bool) or not isinstance(value_, (int, float)):
                return None, f"wrong type: {field.name} must be a number, got {type(value_).__name__} {value_!r}"
            if not math.isfinite(value_):
                return None, f"impossible value: {field.name}={value_} is not a finite number"
            record[field.name] = float(value_)
    return pa.Table.from_pylist([record], schema=PAYLOAD_SCHEMA), None


def _violations(rows: pa.Table, now: datetime) -> list[tuple[pa.ChunkedArray, object]]:
    """(mask, explain) per contract rule, in order; `explain(row)` words the failure for one row."""
    rules: list[tuple[pa.ChunkedArray, object]] = []
    for name in REQUIRED:
        rules.append((pc.is_null(rows[name]), lambda row, n=name: f"missing required field: {n}"))
    meter_id = rows["meter_id"]
    rules.append((pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(meter_id)), 0),
                  lambda row: "impossible value: empty meter_id"))
    rules.append((pc.greater(pc.utf8_length(meter_id), METER_ID_MAX_LEN),
                  lambda row: f"impossible value: meter_id longer than {METER_ID_MAX_LEN} characters"))
    for name, (low, high, unit) in BOUNDS.items():
        column = rows[name]
        mask = pc.or_(pc.or_(pc.less(column, low), pc.greater(column, high)), pc.is_nan(column))
        rules.append((mask, lambda row, n=name, lo=low, hi=high, u=unit:
                      f"impossible value: {n}={row[n]:g} outside {lo:g}..{hi:g} {u}".rstrip()))
    epoch_us = pc.cast(rows["reading_ts"], pa.int64())
    rules.append((pc.not_equal(pc.remainder(epoch_us, INTERVAL_SECONDS * 1_000_000), 0),
                  lambda row: "impossible value: reading_ts is not on a 15-minute boundary"))
    rules.append((pc.less(epoch_us, int(EARLIEST_READING.timestamp() * 1_000_000)),
                  lambda row: f"impossible value: reading_ts before {EARLIEST_READING:%Y-%m-%d}"))
    latest_us = int((now.timestamp() + MAX_CLOCK_SKEW_SECONDS) * 1_000_000)
    rules.append((pc.greater(epoch_us, latest_us),
                  lambda row: "impossible value: reading_ts more than 24 h in the future"))
    return rules


def _check_rows(rows: pa.Table, now: datetime) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Vectorised contract checks; returns the valid rows and (position, reason) for the rest.

    Masks are cheap boolean columns; reasons are worded only for the (rare) failing rows.
    """
    if rows.num_rows == 0:
        return rows, []
    rules = _violations(rows, now)
    bad = rules[0][0]
    for mask, _ in rules[1:]:
        bad = pc.or_kleene(bad, mask)
    bad = pc.fill_null(bad, False)
    if not pc.any(bad).as_py():
        return rows, []
    failing = rows.filter(bad).to_pylist()
    masks = [pc.fill_null(mask, False).filter(bad).to_pylist() for mask, _ in rules]
    rejected = []
    for i, row in enumerate(failing):
        explain = next(explain for (_, explain), hits in zip(rules, masks) if hits[i])
        rejected.append((row["_index"], explain(row)))
    return rows.filter(pc.invert(bad)), rejected

"""The `meter_readings` contract: the message format, the lake schemas and the ingestion bounds.

A Kafka message is one JSON object per 15-minute reading, keyed by meter id:

    {"meter_id": "DE0000011011500000000000000000001", "reading_ts": "2026-11-22T00:15:00Z",
     "consumption_kwh": 0.118, "export_kwh": 0.0, "voltage": 231.4, "current": 2.1,
     "power_factor": 0.97, "frequency": 50.01, "temperature": 6.2, "humidity": 81.0}

`reading_ts` is the end of the interval in UTC (any ISO-8601 offset is accepted and converted;
a timestamp without an offset is rejected). The ingestion contract rejects only what cannot be a
reading (structure, types, physically impossible values, `BOUNDS`); plausibility (negative
import, EN 50160 voltage, stuck meters) is the quality gate's job.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

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
# What the quality gate publishes to validated/: the reading of record of every usable reading,
# with how many copies Kafka delivered of it and whether they differed (a later correction won).
VALIDATED_SCHEMA = pa.unify_schemas(
    [RAW_SCHEMA, pa.schema([("delivered_copies", pa.int32()), ("corrected", pa.bool_())])]
)
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

REQUIRED = (
    "meter_id",
    "reading_ts",
    "consumption_kwh",
    "export_kwh",
    "voltage",
    "current",
    "power_factor",
    "frequency",
)
# The measured values of a reading (every payload column but meter_id and reading_ts)
MEASUREMENTS = tuple(f.name for f in PAYLOAD_SCHEMA if pa.types.is_floating(f.type))

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
# A reading older than the lookback (`METRIFY_LATE_LOOKBACK_DAYS`) when it is ingested is
# quarantined with a reason starting with this, not landed where no gate would judge it again.
TOO_LATE = "too late:"
EARLIEST_READING = datetime(2000, 1, 1, tzinfo=UTC)
MAX_CLOCK_SKEW_SECONDS = 24 * 3600

# A quarantine row keeps the message's raw bytes in full; its reason is bounded, because error
# messages and reprs can quote the message (a 1 MB message must not make a 1 MB reason).
MAX_REASON_CHARS = 500


def bounded_reason(reason: str) -> str:
    """`reason` as UTF-8-safe text of at most `MAX_REASON_CHARS` characters, marked where cut."""
    text = reason.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates escaped
    if len(text) <= MAX_REASON_CHARS:
        return text
    marker = f"… [reason cut to {MAX_REASON_CHARS} of {len(text)} characters]"
    return text[: MAX_REASON_CHARS - len(marker)] + marker

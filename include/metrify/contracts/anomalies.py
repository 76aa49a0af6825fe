"""Anomaly findings: one row per finding, for meter readings and for grid status."""

from __future__ import annotations

import pyarrow as pa

METER_ANOMALY_TYPES = (
    "negative_consumption",
    "voltage_out_of_range",
    "frequency_out_of_range",
    "stuck_meter",
    "spike",
    "gap",
    "duplicate_conflict",
)
METER_ANOMALY_SCHEMA = pa.schema(
    [
        ("meter_id", pa.string()),
        ("reading_ts", pa.timestamp("us", tz="UTC")),
        ("anomaly_type", pa.string()),
        ("severity", pa.string()),
        ("score", pa.float64()),
        ("detector", pa.string()),
        ("details", pa.string()),  # JSON text
    ]
)
GRID_ANOMALY_SCHEMA = pa.schema(
    [
        ("operator_name", pa.string()),
        ("reading_ts", pa.timestamp("us", tz="UTC")),
        ("anomaly_type", pa.string()),
        ("severity", pa.string()),
        ("score", pa.float64()),
        ("detector", pa.string()),
        ("details", pa.string()),
    ]
)
